"""Wilson score interval for a binomial proportion (Wilson 1927, JASA 22:209; method 3 of Newcombe 1998,
Stat Med 17:857), the interval of every sensitivity, specificity, PPV, NPV and accuracy in evaluation/."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from synthscan.errors import BadInputError


def percent(level: float) -> str:
    return f"{100 * level:g}%"


def z_value(level: float) -> float:
    """The two-sided normal quantile of a confidence level (1.96 for 0.95)."""
    if not 0 < level < 1:
        raise BadInputError(f"confidence level must lie between 0 and 1, got {level}")
    return float(norm.ppf(0.5 + level / 2))


@dataclass(frozen=True)
class Proportion:
    """A proportion ``successes / total`` with a Wilson score interval (nan when ``total`` is 0)."""

    estimate: float
    ci_low: float
    ci_high: float
    successes: int
    total: int
    level: float = 0.95

    def summary(self) -> str:
        if self.total == 0:
            return "undefined (0 of 0)"
        return (f"{self.estimate:.3f} ({percent(self.level)} CI {self.ci_low:.3f}-{self.ci_high:.3f}; "
                f"{self.successes}/{self.total})")


def wilson_interval(successes: int, total: int, level: float = 0.95) -> Proportion:
    """Wilson score interval for a binomial proportion."""
    successes, total = int(successes), int(total)
    if total < 0 or not 0 <= successes <= total:
        raise BadInputError(f"a proportion needs 0 <= successes <= total, got {successes}/{total}")
    if total == 0:
        return Proportion(float("nan"), float("nan"), float("nan"), 0, 0, level)
    z = z_value(level)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return Proportion(p, float(low), float(high), successes, total, level)
