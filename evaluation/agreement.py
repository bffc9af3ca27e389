"""Multi-class agreement between true and predicted classes: accuracy (Wilson CI) and Cohen's kappa
(Cohen 1960; weighted, Cohen 1968) with the large-sample standard error of Fleiss, Cohen & Everitt (1969,
Psychol Bull 72:323) as statsmodels computes it; the estimate itself is scikit-learn's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation.wilson import Proportion, percent, wilson_interval, z_value
from synthscan.errors import BadInputError


@dataclass(frozen=True)
class Agreement:
    """Cohen's kappa between true and predicted classes, with an asymptotic CI."""

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    n: int
    weights: str | None = None
    level: float = 0.95

    def summary(self) -> str:
        kind = "Cohen's kappa" if self.weights is None else f"Cohen's kappa ({self.weights} weights)"
        return (f"{kind} {self.estimate:.3f} ({percent(self.level)} CI {self.ci_low:.3f}-{self.ci_high:.3f}; "
                f"n={self.n})")


def _classes(labels, predicted) -> tuple[np.ndarray, np.ndarray]:
    labels, predicted = np.asarray(labels).ravel(), np.asarray(predicted).ravel()
    if labels.shape != predicted.shape or len(labels) == 0:
        raise BadInputError(f"need equally many true and predicted classes ({len(labels)} vs {len(predicted)})")
    if pd.isna(labels).any() or pd.isna(predicted).any():
        raise BadInputError("blank true or predicted class")
    return labels, predicted


def accuracy(labels, predicted, level: float = 0.95) -> Proportion:
    """Fraction of cases whose predicted class is the true class, with a Wilson CI."""
    labels, predicted = _classes(labels, predicted)
    return wilson_interval(int((labels == predicted).sum()), len(labels), level)


def cohen_kappa(labels, predicted, weights: str | None = None, level: float = 0.95) -> Agreement:
    """Cohen's kappa (``weights`` None, "linear" or "quadratic", e.g. for Perugini grades) with the
    asymptotic CI of Fleiss, Cohen & Everitt (1969)."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix
    from statsmodels.stats.inter_rater import cohens_kappa

    labels, predicted = _classes(labels, predicted)
    if weights not in (None, "linear", "quadratic"):
        raise BadInputError(f"unknown kappa weights {weights!r} (none, linear, quadratic)")
    classes = np.unique(np.concatenate([labels, predicted]))
    if len(classes) < 2:
        raise BadInputError(f"kappa undefined: every true and predicted class is {classes[0]!r}")
    estimate = float(cohen_kappa_score(labels, predicted, weights=weights, labels=classes))
    table = confusion_matrix(labels, predicted, labels=classes)
    # statsmodels weighs disagreement by class position, |i - j| or (i - j)^2, as scikit-learn does
    with np.errstate(invalid="ignore"):  # perfect agreement: variance a rounding error below zero
        variance = float(cohens_kappa(table, wt=weights)["var_kappa"])
    se = float(np.sqrt(max(variance, 0.0)))
    half = z_value(level) * se
    return Agreement(estimate, max(-1.0, estimate - half), min(1.0, estimate + half), se, len(labels), weights,
                     level)
