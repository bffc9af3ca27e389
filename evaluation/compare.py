"""Comparison report of two arms of classifier runs, paired by seed (``synthscan evaluate compare``).

Inputs are predictions.csv files (DESIGN.md section 5), one per run; the two arms are paired by their
``seed`` and must have predicted the same test scans. The statistics are those of evaluation/metrics.py and
evaluation/sites.py (AUC with DeLong CIs, the site matrix, absolute and relative gains with the Wilcoxon
signed-rank test over seed x site and DeLong per site and seed, Holm-adjusted); this module collects inputs,
draws the figures and writes the Markdown.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pandas as pd

from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path, write_text

PREDICTION_COLUMNS = ("study_id", "site", "task", "label", "score", "seed", "arm")


# ------------------------------------------------------------------------------------------------ inputs
def predictions_file(path) -> Path:
    """A predictions.csv: the path itself, in it, or the one file of that name below it."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "predictions.csv").is_file():
        return path / "predictions.csv"
    found = sorted(path.rglob("predictions.csv")) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise BadInputError("no predictions.csv in this run folder (run classify test --out inside it)", path)
    raise BadInputError(f"{len(found)} predictions.csv files below this folder ({', '.join(map(str, found[:3]))}"
                        "...); give the files themselves", path)


def read_predictions(path) -> pd.DataFrame:
    path = predictions_file(path)
    try:
        frame = pd.read_csv(path, dtype={"study_id": str, "site": str, "arm": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise BadInputError(f"not a readable predictions CSV ({error})", path) from None
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise BadInputError(f"predictions lack column(s) {missing}", path)
    if frame["score"].isna().any() or frame["label"].isna().any():
        raise BadInputError("blank score or label", path)
    frame.attrs["path"] = str(path)
    return frame


def read_arm(patterns, role: str) -> dict[int, pd.DataFrame]:
    """Predictions of one arm by seed, from glob patterns of run folders or files."""
    paths = []
    for pattern in patterns:
        matched = sorted(glob.glob(str(pattern)))
        if not matched:
            raise BadInputError(f"arm {role}: nothing matches {pattern!r}")
        paths += matched
    runs = {}
    for path in dict.fromkeys(paths):
        frame = read_predictions(path)
        seeds = frame["seed"].dropna().unique()
        if len(seeds) != 1:
            raise BadInputError(f"arm {role}: expected one seed per run, found {sorted(seeds)}", frame.attrs["path"])
        seed = int(seeds[0])
        if seed in runs:
            raise BadInputError(f"arm {role}: two runs with seed {seed} ({runs[seed].attrs['path']} and "
                                f"{frame.attrs['path']})")
        runs[seed] = frame
    return runs


def pair_by_seed(a: dict, b: dict) -> list[int]:
    """Seeds present in both arms; runs must share the task and the test scans."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise BadInputError(f"no seed in common between arm A (seeds {sorted(a)}) and arm B (seeds {sorted(b)})")
    tasks = {t for frame in list(a.values()) + list(b.values()) for t in frame["task"].unique()}
    if len(tasks) != 1:
        raise BadInputError(f"the runs were made for different tasks: {sorted(tasks)}")
    for seed in seeds:
        left, right = a[seed], b[seed]
        if set(left["study_id"]) != set(right["study_id"]):
            raise BadInputError(f"seed {seed}: arms A and B predicted different test scans "
                                f"({left.attrs['path']} vs {right.attrs['path']}); a paired comparison needs the same")
    return seeds


def read_baseline(path) -> pd.DataFrame | None:
    if path is None:
        return None
    path = Path(path)
    return read_predictions(path / "hcl_predictions.csv" if path.is_dir() else path)


# ----------------------------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _savefig(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    _pyplot().close(fig)


def roc_figure(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], title: str, path) -> None:
    """ROC curves per arm (one thin line per seed) on one axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    for index, (name, lines) in enumerate(curves.items()):
        for k, (fpr, tpr) in enumerate(lines):
            ax.plot(fpr, tpr, color=f"C{index}", alpha=0.35 if len(lines) > 1 else 1.0, lw=1,
                    label=name if k == 0 else None)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(scores))
    return fpr, tpr


def single_class_note(labels) -> str | None:
    """A plain statement when AUC is undefined on a set (one class only), else None."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return "no scans"
    if (labels > 0).all():
        return f"AUC undefined: only positives (n={len(labels)})"
    if (labels == 0).all():
        return f"AUC undefined: only negatives (n={len(labels)})"
    return None


def markdown_table(frame: pd.DataFrame) -> str:
    cells = frame.astype(str)
    lines = ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.to_numpy()]
    return "\n".join(lines)


def write_report(path, title: str, sections: list[tuple[str, str]]) -> Path:
    text = f"# {title}\n\n" + "\n\n".join(f"## {name}\n\n{body}" for name, body in sections) + "\n"
    write_text(path, text)
    return Path(path)
