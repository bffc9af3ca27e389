"""Diagnostic-accuracy statistics for classifier scores, each with a 95% confidence interval.

- AUC with DeLong's CI (evaluation/delong.py: DeLong et al. 1988, fast midrank algorithm of Sun & Xu 2014)
  or a stratified bootstrap CI (evaluation/bootstrap.py); Hanley & McNeil's 1982 standard error for contrast.
- DeLong's test of two correlated AUCs (two score vectors on the same cases).
- Sensitivity, specificity, PPV and NPV at a threshold fixed beforehand (on validation data: Youden's J or a
  target sensitivity), with Wilson score intervals (evaluation/wilson.py).
- Calibration: Brier score and a reliability diagram (evaluation/calibration.py).
- Multi-class: accuracy (Wilson CI) and Cohen's kappa (evaluation/agreement.py).
- AUC per subgroup (sex, age band, tracer, camera, any column) and Holm's multiplicity correction (Holm 1979).

Scores: higher means positive (abnormal). Labels: 0/1. The CI level defaults to 0.95. AUC is undefined when a
set holds only one class: that raises :class:`BadInputError`, it never returns nan.
Everything is importable from this module; the helpers live in the files named above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from evaluation.agreement import Agreement, accuracy, cohen_kappa
from evaluation.bootstrap import bootstrap_aucs
from evaluation.calibration import Calibration, calibration, reliability_diagram
from evaluation.delong import delong_covariance
from evaluation.wilson import Proportion, percent, wilson_interval, z_value
from synthscan.errors import BadInputError

__all__ = [
    "AUCResult", "AUCComparison", "Threshold", "DiagnosticMetrics", "Proportion", "Calibration", "Agreement",
    "auc", "delong_auc", "bootstrap_auc", "auc_ci", "hanley_mcneil_se", "delong_test", "wilson_interval",
    "roc_points", "choose_threshold", "diagnostic_metrics", "calibration", "reliability_diagram", "accuracy",
    "cohen_kappa", "age_band", "subgroup_aucs", "auc_row", "holm", "format_p", "p_text", "binary_inputs",
]


# ------------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class AUCResult:
    """Area under the ROC curve with a confidence interval."""

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    n_positive: int
    n_negative: int
    method: str  # "delong" or "bootstrap"
    level: float = 0.95

    def summary(self) -> str:
        return (f"AUC {self.estimate:.3f} ({percent(self.level)} CI {self.ci_low:.3f}-{self.ci_high:.3f}, "
                f"{self.method}; {self.n_positive} positive, {self.n_negative} negative)")


@dataclass(frozen=True)
class AUCComparison:
    """DeLong's paired test of two AUCs on the same cases; ``estimate`` is AUC_b - AUC_a."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    z: float
    auc_a: float
    auc_b: float
    n_positive: int
    n_negative: int
    level: float = 0.95

    def summary(self) -> str:
        return (f"AUC {self.auc_b:.3f} vs {self.auc_a:.3f}: difference {self.estimate:+.3f} "
                f"({percent(self.level)} CI {self.ci_low:+.3f} to {self.ci_high:+.3f}), DeLong z = {self.z:.2f}, "
                f"{p_text(self.p_value)} ({self.n_positive} positive, {self.n_negative} negative)")


@dataclass(frozen=True)
class Threshold:
    """An operating point chosen on validation data: predict positive when ``score >= value``."""

    value: float
    rule: str  # "youden" or "sensitivity>=0.90"
    sensitivity: float  # on the data it was chosen on
    specificity: float

    def summary(self) -> str:
        return (f"threshold {self.value:.6g} ({self.rule}; on its own data sensitivity {self.sensitivity:.3f}, "
                f"specificity {self.specificity:.3f})")


@dataclass(frozen=True)
class DiagnosticMetrics:
    """Sensitivity, specificity, PPV and NPV at one threshold, with the 2x2 table they come from."""

    threshold: float
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion
    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int

    def summary(self) -> str:
        lines = [f"at threshold {self.threshold:.6g} (TP {self.true_positive}, FP {self.false_positive}, "
                 f"TN {self.true_negative}, FN {self.false_negative}):"]
        for name in ("sensitivity", "specificity", "ppv", "npv"):
            lines.append(f"  {name.upper() if len(name) == 3 else name}: {getattr(self, name).summary()}")
        return "\n".join(lines)


def format_p(p_value: float) -> str:
    """p-values as reported in papers: three significant digits, '<0.0001' below that, 'n/a' when blank."""
    if not np.isfinite(p_value):
        return "n/a"
    return "<0.0001" if p_value < 1e-4 else f"{p_value:.3g}"


def p_text(p_value: float) -> str:
    """'p = 0.0123' or 'p < 0.0001'."""
    text = format_p(p_value)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


# ---------------------------------------------------------------------------------------------- checking
def binary_inputs(labels, scores, what: str = "AUC", paired: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels as booleans and scores as float64, checked: same length, 0/1 labels, finite scores, two classes.
    Scores are one vector, or with ``paired`` a (k, N) array of k vectors on the same cases."""
    labels, scores = _numbers(labels, "labels").ravel(), _numbers(scores, "scores")
    if scores.ndim != (2 if paired else 1):
        raise BadInputError(f"scores must be {'a (k, N) array' if paired else 'one vector'}, got shape {scores.shape}")
    if scores.shape[-1] != labels.shape[0]:
        raise BadInputError(f"{labels.shape[0]} labels but {scores.shape[-1]} scores")
    if np.isnan(labels).any() or not np.isin(labels, (0, 1)).all():
        raise BadInputError("labels must be 0 or 1 (blank or other values found)")
    if not np.isfinite(scores).all():
        raise BadInputError(f"scores must be finite numbers ({int((~np.isfinite(scores)).sum())} blank/inf/nan)")
    positive = labels == 1
    n_positive = int(positive.sum())
    if n_positive == 0 or n_positive == len(labels):
        only, absent = ("positive", "negative") if n_positive else ("negative", "positive")
        raise BadInputError(f"{what} undefined: test set has only one class (all {len(labels)} cases "
                            f"{only}, none {absent})")
    return positive, scores


def _numbers(values, what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"{what} must be numbers") from None


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------------- AUC
def auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half)."""
    positive, scores = binary_inputs(labels, scores)
    x, y = np.sort(scores[positive]), np.sort(scores[~positive])
    below = np.searchsorted(y, x, "left") + np.searchsorted(y, x, "right")
    return float(below.sum() / (2.0 * len(x) * len(y)))


def delong_auc(labels, scores, level: float = 0.95) -> AUCResult:
    """AUC with DeLong's CI: estimate +- z * SE, clipped to [0, 1] (as pROC's ``ci.auc``)."""
    positive, scores = binary_inputs(labels, scores)
    aucs, covariance = delong_covariance(positive, scores)
    estimate, se = float(aucs[0]), float(np.sqrt(max(covariance[0, 0], 0.0)))
    half = z_value(level) * se
    return AUCResult(estimate, max(0.0, estimate - half), min(1.0, estimate + half), se,
                     int(positive.sum()), int((~positive).sum()), "delong", level)


def bootstrap_auc(labels, scores, n_resamples: int = 2000, seed=0, level: float = 0.95) -> AUCResult:
    """AUC with a stratified percentile bootstrap CI; ``se`` is the SD of the resampled AUCs."""
    positive, scores = binary_inputs(labels, scores)
    if n_resamples < 2:
        raise BadInputError(f"need at least 2 bootstrap resamples, got {n_resamples}")
    z_value(level)
    resampled = bootstrap_aucs(positive, scores, n_resamples, _rng(seed))
    low, high = np.quantile(resampled, [0.5 - level / 2, 0.5 + level / 2])
    return AUCResult(auc(positive, scores), float(low), float(high), float(resampled.std(ddof=1)),
                     int(positive.sum()), int((~positive).sum()), "bootstrap", level)


def auc_ci(labels, scores, method: str = "delong", level: float = 0.95, n_resamples: int = 2000,
           seed=0) -> AUCResult:
    """AUC with a CI by ``method`` "delong" (default) or "bootstrap"."""
    if method == "delong":
        return delong_auc(labels, scores, level)
    if method == "bootstrap":
        return bootstrap_auc(labels, scores, n_resamples, seed, level)
    raise BadInputError(f"unknown AUC CI method {method!r} (delong, bootstrap)")


def hanley_mcneil_se(auc_value: float, n_positive: int, n_negative: int) -> float:
    """SE of the AUC by Hanley & McNeil (1982, Radiology 143:29, eq. 2 with the exponential-model
    approximations Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A)); DeLong's SE estimates Q1 and Q2 from the data."""
    a = auc_value
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (n_positive - 1) * (q1 - a * a) + (n_negative - 1) * (q2 - a * a))
    return float(np.sqrt(variance / (n_positive * n_negative)))


def delong_test(labels, scores_a, scores_b, level: float = 0.95) -> AUCComparison:
    """DeLong's test of H0: AUC_a = AUC_b, for two score vectors on the same cases (paired).

    ``estimate`` and its CI are AUC_b - AUC_a; the p-value is two-sided.
    """
    scores_a, scores_b = _numbers(scores_a, "scores_a"), _numbers(scores_b, "scores_b")
    if scores_a.shape != scores_b.shape:
        raise BadInputError(f"paired DeLong test needs both score vectors on the same cases "
                            f"({scores_a.shape[0]} vs {scores_b.shape[0]} scores)")
    positive, scores = binary_inputs(labels, np.vstack([scores_a, scores_b]), paired=True)
    aucs, s = delong_covariance(positive, scores)
    difference = float(aucs[1] - aucs[0])
    variance = float(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    se = np.sqrt(max(variance, 0.0))
    if se == 0.0:  # identical rankings: no evidence of a difference (and nothing to divide by)
        z, p_value = 0.0, 1.0
    else:
        z = difference / se
        p_value = float(2 * norm.sf(abs(z)))
    half = z_value(level) * se
    return AUCComparison(difference, difference - half, difference + half, p_value, float(z),
                         float(aucs[0]), float(aucs[1]), int(positive.sum()), int((~positive).sum()), level)


# ------------------------------------------------------------------------------- threshold-based metrics
def roc_points(labels, scores) -> pd.DataFrame:
    """Every distinct operating point: threshold (midpoints between sorted distinct scores, +-inf at the
    ends, as pROC), sensitivity and specificity when predicting positive for ``score >= threshold``."""
    positive, scores = binary_inputs(labels, scores, "ROC curve")
    values = np.unique(scores)
    thresholds = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2, [np.inf]])
    x, y = np.sort(scores[positive]), np.sort(scores[~positive])
    sensitivity = 1 - np.searchsorted(x, thresholds, "left") / len(x)
    specificity = np.searchsorted(y, thresholds, "left") / len(y)
    return pd.DataFrame({"threshold": thresholds, "sensitivity": sensitivity, "specificity": specificity})


def choose_threshold(labels, scores, rule: str = "youden", target_sensitivity: float | None = None) -> Threshold:
    """Fix an operating point on validation data, to be applied unchanged to test data.

    ``rule="youden"`` maximizes sensitivity + specificity - 1 (ties go to the higher sensitivity);
    ``rule="sensitivity"`` takes the highest threshold whose sensitivity reaches ``target_sensitivity``.
    """
    points = roc_points(labels, scores)
    sensitivity, specificity = points["sensitivity"].to_numpy(), points["specificity"].to_numpy()
    if rule == "youden":
        youden = sensitivity + specificity - 1
        best = np.flatnonzero(np.isclose(youden, youden.max(), rtol=0, atol=1e-12))
        index, name = best[np.argmax(sensitivity[best])], "youden"
    elif rule == "sensitivity":
        if target_sensitivity is None or not 0 < target_sensitivity <= 1:
            raise BadInputError(f"rule 'sensitivity' needs target_sensitivity in (0, 1], got {target_sensitivity}")
        reaching = np.flatnonzero(sensitivity >= target_sensitivity - 1e-12)
        index, name = reaching.max(), f"sensitivity>={target_sensitivity:g}"
    else:
        raise BadInputError(f"unknown threshold rule {rule!r} (youden, sensitivity)")
    return Threshold(float(points["threshold"].iloc[index]), name, float(sensitivity[index]),
                     float(specificity[index]))


def diagnostic_metrics(labels, scores, threshold, level: float = 0.95) -> DiagnosticMetrics:
    """Sensitivity, specificity, PPV, NPV (Wilson CIs) predicting positive for ``score >= threshold``.

    ``threshold`` is a number or a :class:`Threshold` from :func:`choose_threshold` on validation data.
    One-class test sets are allowed here (the undefined proportions come back with total 0).
    """
    value = float(threshold.value if isinstance(threshold, Threshold) else threshold)
    labels = np.asarray(labels, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or not np.isin(labels, (0, 1)).all() or not np.isfinite(scores).all():
        raise BadInputError("need equally many 0/1 labels and finite scores")
    predicted, positive = scores >= value, labels == 1
    tp, fp = int((predicted & positive).sum()), int((predicted & ~positive).sum())
    tn, fn = int((~predicted & ~positive).sum()), int((~predicted & positive).sum())
    return DiagnosticMetrics(value, wilson_interval(tp, tp + fn, level), wilson_interval(tn, tn + fp, level),
                             wilson_interval(tp, tp + fp, level), wilson_interval(tn, tn + fn, level),
                             tp, fp, tn, fn)


# ---------------------------------------------------------------------------------- subgroups, Holm
AGE_EDGES = (50, 60, 70, 80)


def age_band(age_years, edges=AGE_EDGES) -> pd.Series:
    """Age bands as an ordered categorical ("<50", "50-59", ..., ">=80"); blank ages stay blank."""
    ages = pd.to_numeric(pd.Series(age_years), errors="coerce").to_numpy(dtype=float)
    names = [f"<{edges[0]}"] + [f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]}"]
    codes = np.searchsorted(np.asarray(edges, float), ages, side="right")
    codes[np.isnan(ages)] = -1
    index = age_years.index if isinstance(age_years, pd.Series) else None
    return pd.Series(pd.Categorical.from_codes(codes, categories=names, ordered=True), index=index)


def subgroup_aucs(frame: pd.DataFrame, by, label: str = "label", score: str = "score", method: str = "delong",
                  level: float = 0.95, n_resamples: int = 2000, seed=0) -> pd.DataFrame:
    """AUC with CI per subgroup of ``frame``, after an "all" row.

    ``by`` is a column or a list of columns (sex, tracer, camera, site, ...); "age_band" is derived from
    ``age_years`` when the frame has no such column. Blank keys form an "unknown" group. Where the AUC or its
    CI is undefined (one class, or fewer than 2 cases of a class) the cells stay blank and ``note`` says why.
    """
    frame = frame.copy()
    by = [by] if isinstance(by, str) else list(by)
    if "age_band" in by and "age_band" not in frame.columns and "age_years" in frame.columns:
        frame["age_band"] = age_band(frame["age_years"])
    missing = [c for c in by + [label, score] if c not in frame.columns]
    if missing:
        raise BadInputError(f"subgroup AUCs need column(s) {missing}")
    keys, ranks = {}, {}
    for column in by:
        values = frame[column]
        order = list(values.cat.categories) if isinstance(values.dtype, pd.CategoricalDtype) else \
            sorted(values.dropna().astype(str).unique())
        keys[column] = values.astype(object).where(values.notna(), "unknown").astype(str)
        ranks[column] = {str(v): i for i, v in enumerate(order)}
    rows = [_subgroup_row({c: "all" for c in by}, frame, label, score, method, level, n_resamples, seed)]
    groups = []
    for values, part in frame.groupby([keys[c] for c in by], sort=False):
        values = values if isinstance(values, tuple) else (values,)
        groups.append((tuple(ranks[c].get(v, len(ranks[c])) for c, v in zip(by, values)), values, part))
    for _, values, part in sorted(groups, key=lambda group: group[0]):
        rows.append(_subgroup_row(dict(zip(by, values)), part, label, score, method, level, n_resamples, seed))
    return pd.DataFrame(rows)


def _subgroup_row(key: dict, part: pd.DataFrame, label, score, method, level, n_resamples, seed) -> dict:
    return dict(key, **auc_row(part[label], part[score], method, level, n_resamples, seed))


def auc_row(labels, scores, method: str = "delong", level: float = 0.95, n_resamples: int = 2000,
            seed=0) -> dict:
    """One table row: n, n_positive, n_negative, auc, ci_low, ci_high, note. Never raises for a one-class set
    (or one too small for a CI): the undefined cells are blank (pd.NA) and ``note`` says why."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    row = dict(n=len(labels), n_positive=int((labels == 1).sum()), n_negative=int((labels == 0).sum()),
               auc=pd.NA, ci_low=pd.NA, ci_high=pd.NA, note="")
    try:
        result = auc_ci(labels, scores, method, level, n_resamples, seed)
    except BadInputError as error:
        row["note"] = str(error)
        if "at least 2" in row["note"]:  # defined, but too few cases for a CI
            row["auc"] = auc(labels, scores)
        return row
    row.update(auc=result.estimate, ci_low=result.ci_low, ci_high=result.ci_high)
    return row


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels ``multipletests(method="holm")``); blank p-values stay blank."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=np.float64).ravel()
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if ((p[finite] < 0) | (p[finite] > 1)).any():
        raise BadInputError("p-values must lie in [0, 1]")
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method="holm")[1]
    return adjusted
