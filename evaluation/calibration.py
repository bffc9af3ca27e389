"""Calibration of predicted probabilities: the Brier score (Brier 1950) and a reliability diagram.

The diagram bins the predicted probabilities (uniform or quantile bins) and plots the observed fraction of
positives per bin, with Wilson intervals, against the mean prediction in the bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation.wilson import percent, wilson_interval, z_value
from synthscan.errors import BadInputError


@dataclass(frozen=True)
class Calibration:
    """Brier score (``estimate``, normal-approximation CI) and the reliability table behind the diagram."""

    estimate: float
    ci_low: float
    ci_high: float
    bins: pd.DataFrame  # bin_low, bin_high, n, mean_predicted, observed, observed_low, observed_high
    level: float = 0.95

    def summary(self) -> str:
        return (f"Brier score {self.estimate:.4f} ({percent(self.level)} CI {self.ci_low:.4f}-"
                f"{self.ci_high:.4f}; n={int(self.bins['n'].sum())}, {len(self.bins)} non-empty bins)")



def calibration(labels, probabilities, n_bins: int = 10, strategy: str = "uniform",
                level: float = 0.95) -> Calibration:
    """Brier score with a normal-approximation CI, and the reliability table (observed positive rate per bin
    of predicted probability, Wilson CIs). ``strategy``: "uniform" bins of [0, 1] or "quantile" bins."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.shape != probabilities.shape or len(labels) == 0 or not np.isin(labels, (0, 1)).all():
        raise BadInputError("calibration needs equally many 0/1 labels and probabilities")
    if not np.isfinite(probabilities).all() or probabilities.min() < 0 or probabilities.max() > 1:
        raise BadInputError("calibration needs probabilities in [0, 1] (these scores are not; apply the "
                            "model's sigmoid/softmax first)")
    if n_bins < 1:
        raise BadInputError(f"need at least one bin, got {n_bins}")
    squared = (probabilities - labels) ** 2
    brier = float(squared.mean())
    half = z_value(level) * (squared.std(ddof=1) / np.sqrt(len(squared)) if len(squared) > 1 else 0.0)
    if strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(probabilities, np.linspace(0, 1, n_bins + 1)))
        edges[0], edges[-1] = 0.0, 1.0
    else:
        raise BadInputError(f"unknown binning strategy {strategy!r} (uniform, quantile)")
    index = np.clip(np.searchsorted(edges, probabilities, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in np.unique(index):
        inside = index == b
        observed = wilson_interval(int(labels[inside].sum()), int(inside.sum()), level)
        rows.append((edges[b], edges[b + 1], int(inside.sum()), float(probabilities[inside].mean()),
                     observed.estimate, observed.ci_low, observed.ci_high))
    bins = pd.DataFrame(rows, columns=["bin_low", "bin_high", "n", "mean_predicted", "observed", "observed_low",
                                       "observed_high"])
    return Calibration(brier, max(0.0, brier - half), brier + half, bins, level)


def reliability_diagram(result: Calibration, path, title: str = "Calibration"):
    """Write a reliability diagram (observed vs predicted per bin, Wilson error bars) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthscan.io.atomic import atomic_path

    bins = result.bins
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--", label="perfect calibration")
    ax.errorbar(bins["mean_predicted"], bins["observed"],
                yerr=[bins["observed"] - bins["observed_low"], bins["observed_high"] - bins["observed"]],
                fmt="o-", color="C0", ms=4, lw=1, capsize=2, label="observed (Wilson CI)")
    ax.set(xlabel="predicted probability", ylabel="observed fraction positive", xlim=(0, 1), ylim=(0, 1),
           title=f"{title}\nBrier {result.estimate:.3f}")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
