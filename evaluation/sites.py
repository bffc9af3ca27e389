"""Multi-site evaluation: the site matrix, the gain of one training arm over another, leave-one-site-out.

Input is predictions as classifiers write them (DESIGN.md section 5): one row per test scan with
``study_id, site, task, label, score, seed, arm``. A *run* is one (arm, seed); runs of two arms with the same
seed are paired. The gain of arm b over arm a at a site is absolute, AUC_b - AUC_a in AUC points, and relative,
(AUC_b - AUC_a) / AUC_a. Across repeated seeds the gains are tested with the Wilcoxon signed-rank test over all
seed x site pairs (scipy), and per site and seed with DeLong's paired test when both arms scored the same test
scans (evaluation/metrics.py), Holm-adjusted over all those tests. The paper's "+33 (10)% mean relative AUC
gain, p < 0.0001" is ``ArmComparison.relative`` / ``relative_sd`` / ``p_value``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation import metrics
from synthscan.errors import BadInputError

PREDICTION_COLUMNS = ("study_id", "site", "task", "label", "score", "seed", "arm")
POOLED = "pooled"


def check_predictions(predictions: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """The predictions of one task, checked: columns present, no blank label/score/site, one row per scan per
    run. ``task`` may be omitted when there is only one."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise BadInputError(f"predictions lack column(s) {missing} (expected {', '.join(PREDICTION_COLUMNS)})")
    tasks = sorted(predictions["task"].dropna().astype(str).unique())
    if task is None:
        if len(tasks) != 1:
            raise BadInputError(f"predictions hold tasks {tasks}: choose one")
        task = tasks[0]
    elif task not in tasks:
        raise BadInputError(f"no predictions for task {task!r} (found {tasks})")
    frame = predictions[predictions["task"].astype(str) == task].copy()
    for column in ("label", "score", "site", "seed", "arm", "study_id"):
        if frame[column].isna().any():
            raise BadInputError(f"blank {column!r} in {int(frame[column].isna().sum())} prediction row(s)")
    frame["site"], frame["arm"], frame["study_id"] = (frame[c].astype(str) for c in ("site", "arm", "study_id"))
    frame["seed"] = frame["seed"].astype(np.int64)
    duplicated = frame.duplicated(["arm", "seed", "study_id"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise BadInputError(f"scan {row['study_id']!r} predicted twice by arm {row['arm']!r}, seed {row['seed']}")
    return frame


# ------------------------------------------------------------------------------------------ site matrix
def site_matrix(predictions: pd.DataFrame, task: str | None = None, method: str = "delong",
                level: float = 0.95, n_resamples: int = 2000, seed=0) -> pd.DataFrame:
    """AUC with CI per (arm, seed, site), plus a "pooled" site per run (all its test scans together).

    Columns: task, arm, seed, site, n, n_positive, n_negative, auc, ci_low, ci_high, note. A site where the AUC
    or its CI is undefined keeps blank cells and a note saying why.
    """
    frame = check_predictions(predictions, task)
    rows = []
    for (arm, run_seed), run in frame.groupby(["arm", "seed"], sort=True):
        parts = [(site, part) for site, part in run.groupby("site", sort=True)] + [(POOLED, run)]
        for site, part in parts:
            rows.append({"task": part["task"].iloc[0], "arm": arm, "seed": run_seed, "site": site,
                         **metrics.auc_row(part["label"], part["score"], method, level, n_resamples, seed)})
    return pd.DataFrame(rows)


def site_matrix_markdown(matrix: pd.DataFrame, decimals: int = 3) -> str:
    """The site matrix as a Markdown table: one row per site (pooled last), one column per arm. A cell is
    "AUC [CI]" for a single seed, "mean ± SD (k seeds)" of the AUC over several."""
    arms = sorted(matrix["arm"].unique())
    sites = sorted(s for s in matrix["site"].unique() if s != POOLED) + [POOLED]
    lines = ["| site | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for site in sites:
        cells = [_cell(matrix[(matrix["site"] == site) & (matrix["arm"] == arm)], decimals) for arm in arms]
        lines.append(f"| {site} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(rows: pd.DataFrame, decimals: int) -> str:
    if rows.empty:
        return "-"
    defined = rows.dropna(subset=["auc"])
    if defined.empty:
        return "undefined: " + ("one class only" if "one class" in rows["note"].iloc[0] else rows["note"].iloc[0])
    if len(rows) == 1:
        row = rows.iloc[0]
        interval = "" if pd.isna(row["ci_low"]) else f" [{row['ci_low']:.{decimals}f}-{row['ci_high']:.{decimals}f}]"
        return f"{row['auc']:.{decimals}f}{interval}"
    values = defined["auc"].astype(float)
    text = f"{values.mean():.{decimals}f} ± {values.std(ddof=1) if len(values) > 1 else 0:.{decimals}f} " \
           f"({len(values)} seeds)"
    return text + (f", {len(rows) - len(values)} undefined" if len(values) < len(rows) else "")


# --------------------------------------------------------------------------------------- arm comparison
@dataclass(frozen=True)
class ArmComparison:
    """Gain of arm b over arm a over seed x site pairs.

    ``estimate`` (CI: t-interval over pairs) is the mean absolute gain in AUC points; ``relative`` the mean
    relative gain (AUC_b - AUC_a) / AUC_a; ``p_value`` the two-sided Wilcoxon signed-rank test of the absolute
    gains. ``per_pair`` holds one row per seed and site (with DeLong's paired test where the arms scored the
    same scans, Holm-adjusted), ``per_site`` the mean and SD over seeds per site.
    """

    task: str
    arm_a: str
    arm_b: str
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    absolute_sd: float
    relative: float
    relative_sd: float
    relative_ci_low: float
    relative_ci_high: float
    n_pairs: int
    n_seeds: int
    n_sites: int
    per_pair: pd.DataFrame
    per_site: pd.DataFrame
    level: float = 0.95

    def summary(self) -> str:
        head = (f"{self.task}: {self.arm_b} vs {self.arm_a} over {self.n_pairs} seed x site pair(s) "
                f"({self.n_seeds} seeds, {self.n_sites} sites): ")
        if self.n_pairs < 2:  # no spread, no interval, no test worth the name
            return head + (f"AUC gain {self.estimate:+.3f}, relative {100 * self.relative:+.1f}% "
                           "(one pair: no SD, CI or test)")
        percent = metrics.percent(self.level)
        return head + (
            f"AUC gain {self.estimate:+.3f} ± {self.absolute_sd:.3f} ({percent} CI {self.ci_low:+.3f} to "
            f"{self.ci_high:+.3f}), relative {100 * self.relative:+.1f}% ± {100 * self.relative_sd:.1f}% "
            f"({percent} CI {100 * self.relative_ci_low:+.1f}% to {100 * self.relative_ci_high:+.1f}%), "
            f"Wilcoxon signed-rank {metrics.p_text(self.p_value)}")


def compare_arms(predictions: pd.DataFrame, arm_a: str, arm_b: str, task: str | None = None,
                 level: float = 0.95) -> ArmComparison:
    """Gain of ``arm_b`` over ``arm_a`` per site and seed, with paired tests (see the module docstring).

    Seeds are paired by value; a site enters a seed's comparison when both runs tested scans there and both
    AUCs are defined (otherwise it is listed in ``per_pair`` with a note and left out of the tests).
    """
    from scipy.stats import t as student_t

    frame = check_predictions(predictions, task)
    arms = set(frame["arm"].unique())
    for arm in (arm_a, arm_b):
        if arm not in arms:
            raise BadInputError(f"no predictions of arm {arm!r} (arms: {sorted(arms)})")
    seeds_a = set(frame.loc[frame["arm"] == arm_a, "seed"])
    seeds_b = set(frame.loc[frame["arm"] == arm_b, "seed"])
    seeds = sorted(seeds_a & seeds_b)
    if not seeds:
        raise BadInputError(f"arms {arm_a!r} (seeds {sorted(seeds_a)}) and {arm_b!r} (seeds {sorted(seeds_b)}) "
                            "share no seed: nothing to pair")
    rows = []
    for seed in seeds:
        run_a = frame[(frame["arm"] == arm_a) & (frame["seed"] == seed)]
        run_b = frame[(frame["arm"] == arm_b) & (frame["seed"] == seed)]
        for site in sorted(set(run_a["site"]) | set(run_b["site"])):
            rows.append(_pair(run_a[run_a["site"] == site], run_b[run_b["site"] == site], seed, site, level))
    per_pair = pd.DataFrame(rows)
    tested = per_pair["delong_p"].notna()
    per_pair["delong_p_holm"] = np.nan
    per_pair.loc[tested, "delong_p_holm"] = metrics.holm(per_pair.loc[tested, "delong_p"])
    usable = per_pair[per_pair["gain"].notna()]
    if usable.empty:
        raise BadInputError(f"no site where both {arm_a!r} and {arm_b!r} have a defined AUC for the same seed")
    gains, relative = usable["gain"].to_numpy(float), usable["relative_gain"].to_numpy(float)
    n = len(gains)
    quantile = float(student_t.ppf(0.5 + level / 2, n - 1)) if n > 1 else np.nan

    def mean_ci(values):
        if n < 2:
            return float(values.mean()), np.nan, np.nan, np.nan
        sd = float(values.std(ddof=1))
        half = quantile * sd / np.sqrt(n)
        return float(values.mean()), sd, float(values.mean() - half), float(values.mean() + half)

    gain_mean, gain_sd, gain_low, gain_high = mean_ci(gains)
    relative_mean, relative_sd, relative_low, relative_high = mean_ci(relative)
    return ArmComparison(str(frame["task"].iloc[0]), arm_a, arm_b, gain_mean, gain_low, gain_high,
                         wilcoxon_p(gains), gain_sd, relative_mean, relative_sd, relative_low, relative_high,
                         n, usable["seed"].nunique(), usable["site"].nunique(), per_pair,
                         _per_site(per_pair), level)


def _pair(part_a: pd.DataFrame, part_b: pd.DataFrame, seed: int, site: str, level: float) -> dict:
    row = {"seed": seed, "site": site, "n_a": len(part_a), "n_b": len(part_b), "auc_a": np.nan, "auc_b": np.nan,
           "gain": np.nan, "relative_gain": np.nan, "delong_low": np.nan, "delong_high": np.nan,
           "delong_p": np.nan, "note": ""}
    if part_a.empty or part_b.empty:
        row["note"] = f"only arm {'b' if part_a.empty else 'a'} tested this site"
        return row
    try:
        auc_a = metrics.auc(part_a["label"], part_a["score"])
        auc_b = metrics.auc(part_b["label"], part_b["score"])
    except BadInputError as error:
        row["note"] = str(error)
        return row
    row.update(auc_a=auc_a, auc_b=auc_b, gain=auc_b - auc_a,
               relative_gain=(auc_b - auc_a) / auc_a if auc_a > 0 else np.nan)
    a, b = part_a.set_index("study_id"), part_b.set_index("study_id")
    if set(a.index) != set(b.index):
        row["note"] = "arms scored different scans: no DeLong test"
        return row
    b = b.loc[a.index]
    if not (a["label"].to_numpy() == b["label"].to_numpy()).all():
        raise BadInputError(f"seed {seed}, site {site}: the two arms disagree on the labels of the same scans")
    try:
        test = metrics.delong_test(a["label"], a["score"], b["score"], level)
    except BadInputError as error:
        row["note"] = str(error)
        return row
    row.update(delong_low=test.ci_low, delong_high=test.ci_high, delong_p=test.p_value)
    return row


def _per_site(per_pair: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for site, part in per_pair.groupby("site", sort=True):
        usable = part[part["gain"].notna()]
        sd = (lambda values: float(values.std(ddof=1)) if len(values) > 1 else np.nan)
        rows.append({"site": site, "n_seeds": len(usable), "auc_a": usable["auc_a"].mean(),
                     "auc_b": usable["auc_b"].mean(), "gain": usable["gain"].mean(), "gain_sd": sd(usable["gain"]),
                     "relative_gain": usable["relative_gain"].mean(), "relative_gain_sd": sd(usable["relative_gain"]),
                     "wilcoxon_p": wilcoxon_p(usable["gain"].to_numpy(float)) if len(usable) else np.nan,
                     "delong_significant": int((part["delong_p_holm"] < 0.05).sum())})
    frame = pd.DataFrame(rows)
    frame["wilcoxon_p_holm"] = metrics.holm(frame["wilcoxon_p"])
    return frame


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros dropped; 1.0 when all are zero)."""
    from scipy.stats import wilcoxon

    differences = np.asarray(differences, dtype=float)
    if len(differences) == 0:
        return np.nan
    if np.all(differences == 0):
        return 1.0
    return float(wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue)


# ------------------------------------------------------------------------------- leave one site out
@dataclass(frozen=True)
class SiteSplit:
    """One fold of leave-one-site-out: train on every other site (and any synthetic rows), test on ``site``."""

    site: str
    train: pd.DataFrame
    test: pd.DataFrame

    def write(self, out_dir) -> tuple[Path, Path]:
        """Write ``out_dir/train.csv`` and ``out_dir/test.csv``, paths rewritten to resolve from there."""
        from synthscan.io.manifest import write_manifest
        from synthscan.mix import rebase_paths

        out_dir = Path(out_dir)
        paths = out_dir / "train.csv", out_dir / "test.csv"
        for frame, path in zip((self.train, self.test), paths):
            write_manifest(rebase_paths(frame, path.parent), path)
        return paths


def leave_one_site_out(manifest: pd.DataFrame, sites=None) -> list[SiteSplit]:
    """Leave-one-site-out folds of a manifest (real rows need a ``site``; synthetic rows are training-only).

    Refuses a patient seen at two sites (that would leak between train and test).
    """
    from synthscan.mix import assert_no_synthetic, is_synthetic

    if "site" not in manifest.columns:
        raise BadInputError("leave-one-site-out needs a 'site' column")
    synthetic = is_synthetic(manifest)
    real = manifest[~synthetic]
    if real["site"].isna().any():
        raise BadInputError(f"{int(real['site'].isna().sum())} real row(s) without a site")
    present = sorted(real["site"].astype(str).unique())
    sites = present if sites is None else [str(s) for s in sites]
    unknown = sorted(set(sites) - set(present))
    if unknown:
        raise BadInputError(f"no scans from site(s) {unknown} (sites: {present})")
    if len(present) < 2:
        raise BadInputError(f"leave-one-site-out needs at least two sites, found {present}")
    if "patient_id" in real.columns:
        per_patient = real.groupby(real["patient_id"].astype(str))["site"].nunique()
        shared = per_patient[per_patient > 1]
        if len(shared):
            raise BadInputError(f"{len(shared)} patient(s) have scans at several sites (e.g. {shared.index[0]!r}): "
                                "leave-one-site-out would leak them between train and test")
    splits = []
    for site in sites:
        held_out = manifest["site"].astype(str).eq(site) & ~synthetic
        train, test = manifest[~held_out].copy(), manifest[held_out].copy()
        assert_no_synthetic(test, f"test split for site {site!r}")
        train.attrs, test.attrs = dict(manifest.attrs), dict(manifest.attrs)
        splits.append(SiteSplit(site, train, test))
    return splits
