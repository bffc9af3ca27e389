"""Write survival_cohort.csv: a small seeded cohort for checking evaluation/survival.py against R.

Exponential survival with a planted hazard ratio of 2 for predicted-abnormal studies, an age effect, a site
effect and uniform administrative censoring. Run once; the CSV is committed and read by
survival_reference.R and tests/unit/test_survival_reference.py.
"""

from pathlib import Path

import numpy as np
import pandas as pd


def make_cohort(n=240, seed=20261123) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    site = rng.choice(np.array(["site-a", "site-b", "site-c"]), size=n, p=[0.5, 0.3, 0.2])
    age_years = np.round(rng.normal(66, 9, size=n), 1)
    score = np.round(rng.beta(1.2, 2.5, size=n), 4)
    abnormal = (score >= 0.5).astype(int)
    log_hazard = (np.log(1 / 900) + np.log(2.0) * abnormal + 0.03 * (age_years - 66)
                  + np.select([site == "site-b", site == "site-c"], [0.3, -0.4], 0.0))
    event_time = rng.exponential(1 / np.exp(log_hazard))
    censor_time = rng.uniform(200, 1800, size=n)
    time_days = np.ceil(np.minimum(event_time, censor_time))  # whole days, so ties occur as in real data
    return pd.DataFrame({
        "study_id": [f"ref-{i:04d}" for i in range(n)], "site": site, "age_years": age_years,
        "score": score, "abnormal": abnormal, "time_days": time_days.astype(int),
        "event": (event_time <= censor_time).astype(int),
    })


if __name__ == "__main__":
    make_cohort().to_csv(Path(__file__).with_name("survival_cohort.csv"), index=False)
