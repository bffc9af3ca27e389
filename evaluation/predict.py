"""Apply a trained classifier run to test manifests: refuse bad test sets, write predictions.csv.

A test set must hold real scans only, share no patient with the run's training set (leakage), carry labels
for the run's task, and hold the views the model was trained on. Rows with a blank ``site`` take the name of
the manifest's folder (``data/site-c/manifest.csv`` -> ``site-c``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.classifier import ClassifierConfig, load_run, predict_probabilities, read_config
from evaluation.data import check_views, load_grid_scans, refuse_overlap, refuse_synthetic, task_labels
from evaluation.training import prediction_frame
from synthscan.errors import BadInputError
from synthscan.io.manifest import read_manifest


def train_patients(run) -> list[str]:
    path = Path(run) / "train_patients.txt"
    if not path.is_file():
        raise BadInputError("run folder lacks train_patients.txt (training not finished?)", run)
    return [line for line in path.read_text().splitlines() if line]


def check_task(config: ClassifierConfig, task: str | None, run) -> None:
    if task is not None and task != config.task:
        raise BadInputError(f"this model was trained for task {config.task!r}, not {task!r}", run)


def read_test_set(path, config: ClassifierConfig, patients, role: str = "test") -> tuple[pd.DataFrame, np.ndarray]:
    """A checked test manifest and its labels for the run's task."""
    frame = read_manifest(path)
    refuse_synthetic(frame, path, role)
    refuse_overlap(patients, frame, path, role)
    labels = task_labels(frame, config.task, path)
    try:
        check_views(frame, config.views)
    except BadInputError as error:
        raise BadInputError(str(error), path) from None
    return with_sites(frame, path), labels


def with_sites(frame: pd.DataFrame, path) -> pd.DataFrame:
    """Blank sites take the name of the manifest's folder."""
    site = frame["site"] if "site" in frame.columns else pd.Series(pd.NA, index=frame.index, dtype=object)
    frame["site"] = site.astype(object).where(site.notna(), Path(path).resolve().parent.name)
    return frame


def site_frame(path, role: str = "test") -> pd.DataFrame:
    """A real-scan manifest with its sites filled in (for baselines that need no model)."""
    frame = read_manifest(path)
    refuse_synthetic(frame, path, role)
    return with_sites(frame, path)


def predict_manifests(run, manifests, task: str | None = None, cache_dir=None, device: str = "cpu",
                      progress: bool = True) -> pd.DataFrame:
    """Predictions of a run on test manifests, one row per study (DESIGN.md section 5 columns first)."""
    config = read_config(run)
    check_task(config, task, run)
    patients = train_patients(run)
    checked = [read_test_set(path, config, patients) for path in manifests]  # all checks before any work
    models, _ = load_run(run, device)
    tables = []
    for path, (frame, labels) in zip(manifests, checked):
        scans = load_grid_scans(frame, config.preprocess, cache_dir, progress, Path(path).parent.name or "test")
        probs = predict_probabilities(models, scans.counts, device=device)
        tables.append(prediction_frame(frame, config, probs, labels))
    predictions = pd.concat(tables, ignore_index=True)
    duplicated = predictions["study_id"].duplicated()
    if duplicated.any():
        raise BadInputError(f"study {predictions['study_id'][duplicated].iloc[0]!r} is in more than one test manifest")
    return predictions


def validation_threshold(run):
    """The operating point of a run, fixed on its validation predictions (Youden's J); None if undefined."""
    from evaluation.metrics import choose_threshold

    for name in ("val_predictions.csv", "cv_predictions.csv"):
        path = Path(run) / name
        if path.is_file():
            validation = pd.read_csv(path)
            try:
                return choose_threshold(validation["label"], validation["score"], "youden")
            except BadInputError:  # one class in validation: no operating point
                return None
    return None
