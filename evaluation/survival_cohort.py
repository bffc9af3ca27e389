"""A survival cohort from a classifier's ``predictions.csv`` and an outcomes manifest, joined on ``study_id``.

Choices (stated in every report):

- **task and arm**: a predictions file may hold several; their scores answer different questions, so when
  there is more than one the user must pick one (``task=``/``arm=``), never a silent mix.
- **seeds**: repeated trainings of one arm are averaged per study (mean score across seeds, then thresholded:
  the ensemble of the repeats), unless ``seed=`` picks one training run. Every seed must score the same
  studies, so the mean is over the same runs for everyone.
- **threshold**: ``threshold=`` if given; else a ``threshold`` column in the predictions (one value for the
  selected rows); else 0.5, allowed only for scores that are probabilities in [0, 1].
- predicted abnormal means ``score >= threshold``.
- outcomes come from the manifest (``time_days`` >= 0, ``event`` 0/1, ``age_years``, ``site``); a study's site
  in the predictions must agree with the manifest's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from synthscan.errors import BadInputError
from synthscan.io.manifest import read_manifest
from synthscan.io.table import read_csv_table

PREDICTION_COLUMNS = ("study_id", "site", "task", "label", "score", "seed", "arm")
MIN_STUDIES = 10  # matched studies below this cannot support a Cox model: an error, not a fragile report
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class Cohort:
    """Studies with a prediction and an outcome: ``study_id, site, score, predicted_abnormal, time_days, event,
    age_years`` (one row each), and how they were chosen."""

    frame: pd.DataFrame
    threshold: float
    threshold_source: str
    task: str | None
    arm: str | None
    seeds: tuple
    n_predicted: int  # studies in the selected predictions
    n_outcomes: int  # rows in the outcomes manifest
    predictions_path: str
    outcomes_path: str
    fingerprint: str  # sha256 of both files' bytes and the selection: identifies a run

    @property
    def n_matched(self) -> int:
        return len(self.frame)

    def summary(self) -> str:
        seeds = (f"seed {self.seeds[0]}" if len(self.seeds) == 1 else
                 f"mean score of {len(self.seeds)} seeds ({', '.join(map(str, self.seeds))})" if self.seeds else
                 "no seed column")
        return (f"task {self.task or 'unnamed'}, arm {self.arm or 'unnamed'}, {seeds}; "
                f"{self.n_matched} of {self.n_predicted} predicted studies matched to outcomes "
                f"({self.n_outcomes} rows in the outcomes file); predicted abnormal: score >= {self.threshold:g} "
                f"({self.threshold_source})")


def _first_row(mask: pd.Series, frame: pd.DataFrame) -> int:
    """The file line (header = line 1) of the first row where ``mask`` holds."""
    return int(frame.loc[mask[mask].index[0], "_line"])


def read_predictions(path) -> pd.DataFrame:
    """Read a predictions CSV; ``score`` (and ``seed``, ``threshold`` if present) numeric; adds ``_line``."""
    path = Path(path)
    frame = read_csv_table(path, "predictions file")
    missing = [c for c in ("study_id", "score") if c not in frame.columns]
    if missing:
        raise BadInputError(f"predictions lack column(s) {missing} (expected {', '.join(PREDICTION_COLUMNS)})",
                            path)
    frame["_line"] = np.arange(len(frame)) + 2
    if frame["study_id"].isna().any():
        raise BadInputError(f"row {_first_row(frame['study_id'].isna(), frame)}: empty study_id", path)
    for column in ("score", "seed", "threshold"):
        if column not in frame.columns:
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = ~np.isfinite(numbers) & (frame[column].notna() | (column == "score"))  # text, inf; blank score
        if bad.any():
            value = frame.loc[bad[bad].index[0], column]
            problem = "empty" if pd.isna(value) else f"{value!r} is not a finite number"
            raise BadInputError(f"column {column!r}, row {_first_row(bad, frame)}: {problem}", path)
        frame[column] = numbers
    if "seed" in frame.columns:
        fractional = frame["seed"].notna() & (frame["seed"] % 1 != 0)
        if fractional.any():
            raise BadInputError(f"column 'seed', row {_first_row(fractional, frame)}: not an integer", path)
        frame["seed"] = frame["seed"].astype("Int64")
    return frame


def select_predictions(frame: pd.DataFrame, task=None, arm=None, seed=None, path=None):
    """Keep one task and one arm (and one seed if given); returns (rows, task, arm, seeds)."""
    chosen = {}
    for column, wanted, flag in (("task", task, "--task"), ("arm", arm, "--arm"), ("seed", seed, "--seed")):
        if column not in frame.columns:
            if wanted is not None:
                raise BadInputError(f"{flag} given but the predictions have no {column!r} column", path)
            chosen[column] = None
            continue
        values = sorted(frame[column].dropna().unique().tolist())
        if wanted is not None:
            if wanted not in values:
                raise BadInputError(f"{flag} {wanted!r} not in the predictions ({column} values: {values})", path)
            frame = frame[frame[column] == wanted]
        elif len(values) > 1 and column != "seed":
            raise BadInputError(f"the predictions hold several {column}s {values}: choose one with {flag}", path)
        chosen[column] = wanted if wanted is not None else (values[0] if values else None)
    seeds = tuple(int(s) for s in sorted(frame["seed"].dropna().unique())) if "seed" in frame.columns else ()
    key = ["seed", "study_id"] if "seed" in frame.columns else ["study_id"]
    duplicated = frame.duplicated(key)
    if duplicated.any():
        raise BadInputError(f"row {_first_row(duplicated, frame)}: study {frame.loc[duplicated].iloc[0]['study_id']!r} "
                            "scored twice for the same task, arm and seed", path)
    if len(seeds) > 1:
        per_seed = frame.groupby("seed")["study_id"].apply(frozenset)
        if per_seed.nunique() > 1:
            raise BadInputError(f"seeds {list(seeds)} score different studies, so their mean would mix runs: "
                                "choose one with --seed", path)
    return frame, chosen["task"], chosen["arm"], seeds


def resolve_threshold(frame: pd.DataFrame, threshold=None, path=None) -> tuple[float, str]:
    if threshold is not None:
        if not np.isfinite(threshold):
            raise BadInputError(f"--threshold must be a finite number, got {threshold}")
        return float(threshold), "--threshold"
    if "threshold" in frame.columns and frame["threshold"].notna().any():
        values = frame["threshold"].unique()
        if frame["threshold"].isna().any() or len(values) > 1:
            raise BadInputError(f"column 'threshold' differs across the selected rows ({sorted(map(float, values))}):"
                                " give --threshold or choose one --seed", path)
        return float(values[0]), "column 'threshold' of the predictions"
    outside = (frame["score"] < 0) | (frame["score"] > 1)
    if outside.any():
        raise BadInputError(f"row {_first_row(outside, frame)}: score {frame.loc[outside, 'score'].iloc[0]:g} is "
                            "not a probability, so the default threshold 0.5 does not apply: give --threshold", path)
    return DEFAULT_THRESHOLD, "default for probabilities"


def read_outcomes(path) -> pd.DataFrame:
    """Read the outcomes manifest; ``event`` must be 0/1 and ``time_days`` >= 0 wherever they are filled in."""
    frame = read_manifest(path, required=("study_id", "time_days", "event"))
    frame["_line"] = np.arange(len(frame)) + 2
    negative = frame["time_days"] < 0
    if negative.any():
        raise BadInputError(f"column 'time_days', row {_first_row(negative, frame)}: negative time "
                            f"{frame.loc[negative, 'time_days'].iloc[0]:g}", path)
    return frame


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _join(scores: pd.DataFrame, outcomes: pd.DataFrame, predictions_path, outcomes_path) -> pd.DataFrame:
    """Outcome rows of the predicted studies, with their scores; every one needs a time and an event."""
    matched = outcomes[outcomes["study_id"].isin(scores.index)]
    if matched.empty:
        raise BadInputError(f"predictions ({predictions_path}) and outcomes ({outcomes_path}) share no study ids "
                            f"(e.g. {list(scores.index[:2])} vs {outcomes['study_id'].head(2).tolist()})")
    if len(matched) < MIN_STUDIES:
        raise BadInputError(f"predictions ({predictions_path}) and outcomes ({outcomes_path}) share only "
                            f"{len(matched)} study ids; at least {MIN_STUDIES} are needed")
    for column in ("time_days", "event"):
        blank = matched[column].isna()
        if blank.any():
            raise BadInputError(f"column {column!r}, row {_first_row(blank, matched)}: empty for study "
                                f"{matched.loc[blank, 'study_id'].iloc[0]!r}, which has a prediction", outcomes_path)
    return matched.join(scores, on="study_id")


def _site(cohort: pd.DataFrame, predictions_path, outcomes_path) -> pd.Series:
    """The manifest's site, else the predictions'; the two must not disagree."""
    site = cohort["site"] if "site" in cohort.columns else pd.Series(np.nan, index=cohort.index)
    predicted = cohort["site_predicted"]
    conflict = site.notna() & predicted.notna() & (site.astype(str) != predicted.astype(str))
    if conflict.any():
        first = cohort[conflict].iloc[0]
        raise BadInputError(f"study {first['study_id']!r} is at site {first['site']!r} in the outcomes "
                            f"({outcomes_path}, row {first['_line']}) but {first['site_predicted']!r} in the "
                            f"predictions ({predictions_path}, row {first['_line_predicted']})")
    site = site.where(site.notna(), predicted)
    if site.notna().any() and site.isna().any():
        raise BadInputError(f"column 'site', row {_first_row(site.isna(), cohort)}: empty for study "
                            f"{cohort.loc[site.isna(), 'study_id'].iloc[0]!r} (and not in the predictions)",
                            outcomes_path)
    return site


def load_cohort(predictions_path, outcomes_path, task=None, arm=None, seed=None, threshold=None) -> Cohort:
    """Join predictions to outcomes on ``study_id`` and split at the threshold (see the module docstring)."""
    predictions = read_predictions(predictions_path)
    predictions, task, arm, seeds = select_predictions(predictions, task, arm, seed, predictions_path)
    threshold, threshold_source = resolve_threshold(predictions, threshold, predictions_path)
    if "site" not in predictions.columns:
        predictions = predictions.assign(site=np.nan)
    scores = predictions.groupby("study_id", sort=False).agg(
        score=("score", "mean"), site_predicted=("site", "first"), _line_predicted=("_line", "first"))
    outcomes = read_outcomes(outcomes_path)
    cohort = _join(scores, outcomes, predictions_path, outcomes_path)
    cohort["site"] = _site(cohort, predictions_path, outcomes_path)
    columns = ["study_id", "site", "score", "time_days", "event"]
    if "age_years" in cohort.columns:
        blank = cohort["age_years"].isna()
        if blank.any() and not blank.all():
            raise BadInputError(f"column 'age_years', row {_first_row(blank, cohort)}: empty (fill in every age "
                                "or leave the column blank to skip the age adjustment)", outcomes_path)
        columns.append("age_years")
    frame = cohort[columns].reset_index(drop=True).astype({"time_days": float, "event": int})
    if "age_years" in frame.columns:
        frame["age_years"] = frame["age_years"].astype(float)
    frame.insert(3, "predicted_abnormal", (frame["score"] >= threshold).astype(int))
    selection = f"task={task} arm={arm} seed={seed} threshold={threshold!r}:{threshold_source}"
    fingerprint = hashlib.sha256(
        f"{_sha256(predictions_path)} {_sha256(outcomes_path)} {selection}".encode()).hexdigest()
    return Cohort(frame, threshold, threshold_source, task, arm, seeds, len(scores), len(outcomes),
                  str(predictions_path), str(outcomes_path), fingerprint)
