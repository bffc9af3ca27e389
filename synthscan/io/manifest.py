"""The manifest: one CSV row per study, the interface between every stage (DESIGN.md section 5).

Paths in the ``path`` column are relative to the manifest's folder. Blank cells mean unknown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path
from synthscan.io.table import read_csv_table
from synthscan.scan import VIEW_SETS

COLUMNS = (
    "study_id", "patient_id", "site", "tracer", "camera", "path", "views", "rows", "cols",
    "pixel_spacing_mm", "total_counts", "activity_mbq", "uptake_minutes", "metastasis", "amyloid_grade",
    "lesion_count", "age_years", "sex", "time_days", "event", "synthetic", "source", "seed", "condition",
    "guidance_scale",
)
REQUIRED = ("study_id", "patient_id", "path", "views")
# Allowed values of categorical columns (blank is always allowed: unknown).
ALLOWED = {
    "metastasis": {0, 1},
    "amyloid_grade": {0, 1, 2, 3},
    "event": {0, 1},
    "synthetic": {0, 1},
    "views": set(VIEW_SETS),
    "sex": {"F", "M", "O"},
    "tracer": {"MDP", "HMDP", "HDP", "DPD"},
    "condition": {"normal", "metastasis", "amyloidosis"},
}
INTEGER_COLUMNS = ("rows", "cols", "metastasis", "amyloid_grade", "lesion_count", "event", "synthetic", "seed",
                   "audit_redraws")
FLOAT_COLUMNS = ("pixel_spacing_mm", "total_counts", "activity_mbq", "uptake_minutes", "age_years",
                 "time_days", "guidance_scale")
TEXT_COLUMNS = ("study_id", "patient_id", "site", "tracer", "camera", "path", "views", "sex", "source", "condition")


def read_manifest(path, required=REQUIRED) -> pd.DataFrame:
    """Read and validate a manifest CSV; integer label columns become pandas nullable ``Int64``."""
    path = Path(path)
    frame = _coerce(read_csv_table(path, "manifest"), path)
    validate_manifest(frame, path, required)
    frame.attrs["root"] = str(path.parent.resolve())
    return frame


def _coerce(frame: pd.DataFrame, path) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        if column in INTEGER_COLUMNS or column in FLOAT_COLUMNS:
            numbers = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column].notna() & numbers.isna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise BadInputError(
                    f"column {column!r}, row {row + 2}: {frame[column].iloc[row]!r} is not a number", path)
            if column in INTEGER_COLUMNS:
                if ((numbers.dropna() % 1) != 0).any():
                    row = int(np.flatnonzero((numbers % 1 != 0).fillna(False).to_numpy())[0])
                    raise BadInputError(
                        f"column {column!r}, row {row + 2}: {frame[column].iloc[row]!r} is not an integer", path)
                numbers = numbers.astype("Int64")
            frame[column] = numbers
    return frame


def validate_manifest(frame: pd.DataFrame, path=None, required=REQUIRED) -> None:
    """Raise :class:`BadInputError` naming the file, column and row of the first problem found."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise BadInputError(f"manifest lacks required column(s) {missing}", path)
    if "study_id" in frame.columns:
        if frame["study_id"].isna().any():
            row = int(np.flatnonzero(frame["study_id"].isna().to_numpy())[0])
            raise BadInputError(f"row {row + 2}: empty study_id", path)
        duplicated = frame["study_id"].duplicated()
        if duplicated.any():
            raise BadInputError(f"duplicate study_id {frame['study_id'][duplicated].iloc[0]!r}", path)
    for column, allowed in ALLOWED.items():
        if column not in frame.columns:
            continue
        values = frame[column].dropna()
        bad = ~values.isin(allowed)
        if bad.any():
            row = int(values.index[bad.to_numpy()][0])
            raise BadInputError(
                f"column {column!r}, row {row + 2}: unknown value {_plain(values[row])!r} (allowed: {sorted(allowed)})",
                path)


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def empty_manifest() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})


def write_manifest(frame: pd.DataFrame, path) -> Path:
    """Validate and write a manifest atomically; standard columns first, extras after, in that order."""
    path = Path(path)
    frame = frame.copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    frame = _coerce(frame.astype({c: object for c in frame.columns if c in TEXT_COLUMNS}), path)
    validate_manifest(frame, path)
    ordered = list(COLUMNS) + [c for c in frame.columns if c not in COLUMNS]
    with atomic_path(path) as tmp:
        frame[ordered].to_csv(tmp, index=False, float_format="%.10g")
    return path


def scan_path(frame: pd.DataFrame, row) -> Path:
    """Absolute path of a row's DICOM file (``row`` is an index label or a row Series)."""
    relative = frame.loc[row, "path"] if not isinstance(row, pd.Series) else row["path"]
    return Path(frame.attrs.get("root", ".")) / str(relative)


def labels_for_task(frame: pd.DataFrame, task: str, path=None) -> np.ndarray:
    """Binary labels for ``metastasis`` or ``amyloidosis`` (grade >= 2); error if any are missing."""
    if task == "metastasis":
        column, values = "metastasis", frame.get("metastasis")
    elif task == "amyloidosis":
        column, values = "amyloid_grade", frame.get("amyloid_grade")
        values = None if values is None else (values >= 2).astype("Int64").where(values.notna())
    elif task == "amyloid_grade":
        column, values = "amyloid_grade", frame.get("amyloid_grade")
    else:
        raise BadInputError(f"unknown task {task!r} (metastasis, amyloidosis, amyloid_grade)", path)
    if values is None or values.isna().any():
        raise BadInputError(f"task {task!r} needs column {column!r} filled in for every row", path)
    return values.to_numpy(dtype=np.int64)


def grouped_split(frame: pd.DataFrame, fractions=(0.8, 0.2), stratify: str | None = "metastasis",
                  seed: int = 0) -> list[pd.DataFrame]:
    """Split by patient (no patient in two parts), stratified by a label column, deterministic in ``seed``.

    Uses scikit-learn's StratifiedGroupKFold with as many folds as the smallest fraction allows and assigns
    whole folds to parts.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    fractions = np.asarray(fractions, float)
    if (fractions <= 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise BadInputError(f"split fractions must be positive and sum to 1, got {tuple(fractions)}")
    n_folds = int(round(1 / fractions.min()))
    n_folds = max(2, min(n_folds * 2 if n_folds < 5 else n_folds, 20))
    groups = frame["patient_id"].astype(str).to_numpy()
    n_folds = min(n_folds, len(np.unique(groups)))
    if n_folds < len(fractions):
        raise BadInputError(f"only {len(np.unique(groups))} patients: too few to split into {len(fractions)}")
    if stratify is not None and stratify in frame.columns and frame[stratify].notna().all():
        strata = frame[stratify].astype(str).to_numpy()
    else:
        strata = np.zeros(len(frame), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = [test for _, test in splitter.split(np.zeros(len(frame)), strata, groups)]
    boundaries = np.round(np.cumsum(fractions) * n_folds).astype(int)
    parts, start = [], 0
    for end in boundaries:
        end = max(end, start + 1)
        index = np.concatenate(folds[start:end]) if end > start else np.array([], int)
        parts.append(frame.iloc[np.sort(index)].copy())
        start = end
    return parts
