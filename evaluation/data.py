"""Classifier inputs: manifest scans resampled onto a fixed grid, cached, normalised; split and leakage checks.

Preprocessing is deterministic and the same for training, validation, test and Grad-CAM:

1. read the study with :func:`synthscan.io.dicom.read_scan` (orientation rule of synthscan/scan.py);
2. choose a box in millimetres: the whole-body field (``FIELD_MM``, centred on the matrix, so scanners with
   different matrices and pixel sizes see the same anatomy at the same scale) or a region of the body
   (``thorax``, ``heart``) placed by fractions of the body length, as the thoracic SPECT study crops to the chest;
3. resample the counts in that box onto the grid by exact area overlap (counts are preserved, no aliasing);
4. when a batch is built: ``x = sqrt(counts / total * n_pixels)``, i.e. counts scaled to unit mean, then the
   square root, the variance-stabilising transform of Poisson data (Anscombe 1948).

Grid counts (step 3, not step 4) are cached per manifest as ``.npy`` so that augmentation can Poisson-resample
them and later runs skip the DICOM reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_dir
from synthscan.io.manifest import labels_for_task, scan_path
from synthscan.scan import VIEW_SETS

PREPROCESS_VERSION = 1
FIELD_MM = (2460.0, 615.0)  # whole-body field: 1024 x 256 pixels of 2.4 mm, the common clinical matrix
# Regions as fractions of body length (head top = 0, feet = 1) and of the body's half-width (arms included)
# around its midline (negative = patient's right = low columns). Thorax: shoulders to the lower ribs; heart: the left
# lower chest (DESIGN.md, PHANTOM.md).
REGIONS = {
    "whole": None,
    "thorax": {"rows": (0.10, 0.42), "cols": (-1.05, 1.05)},
    "heart": {"rows": (0.17, 0.38), "cols": (-0.45, 0.85)},
}
DEFAULT_GRIDS = {"whole": (256, 64), "thorax": (96, 96), "heart": (64, 64)}
TASKS = {"metastasis": 2, "amyloidosis": 2, "amyloid_grade": 4}  # task -> number of classes


@dataclass(frozen=True)
class PreprocessSpec:
    """What a classifier sees: which views, which region, on which grid."""

    views: tuple[str, ...] = ("anterior", "posterior")
    grid: tuple[int, int] = (256, 64)
    region: str = "whole"
    field_mm: tuple[float, float] = FIELD_MM

    def __post_init__(self):
        object.__setattr__(self, "views", tuple(self.views))
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        object.__setattr__(self, "field_mm", tuple(float(f) for f in self.field_mm))
        if "+".join(self.views) not in VIEW_SETS:
            raise BadInputError(f"views must be one of {sorted(VIEW_SETS)}, got {'+'.join(self.views)!r}")
        if self.region not in REGIONS:
            raise BadInputError(f"unknown region {self.region!r} (choose from {', '.join(REGIONS)})")
        if min(self.grid) < 8:
            raise BadInputError(f"grid {self.grid} too small (at least 8 x 8)")

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": PREPROCESS_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GridScans:
    """Scans of one manifest on the grid: counts ``(N, V, H, W)`` and each scan's box in image mm."""

    counts: np.ndarray
    boxes_mm: np.ndarray  # (N, 4): row0, row1, col0, col1 in the scan's own millimetre frame
    spacing_mm: np.ndarray  # (N, 2): native pixel spacing (row, col)

    def __len__(self):
        return len(self.counts)


# --------------------------------------------------------------------------------------------- geometry
def body_extent(counts: np.ndarray) -> tuple[int, int]:
    """First and last row of the body: rows whose summed counts exceed 10% of the 90th-percentile row."""
    profile = counts.sum(axis=(0, 2)) if counts.ndim == 3 else counts.sum(axis=1)
    inside = np.flatnonzero(profile > 0.1 * np.percentile(profile, 90))
    if inside.size == 0:
        return 0, len(profile) - 1
    return int(inside[0]), int(inside[-1])


def body_midline(counts: np.ndarray, rows: tuple[int, int]) -> tuple[float, float]:
    """Midline column and half-width (pixels) of the body within a band of rows.

    Body columns hold more than 20% of the 75th-percentile column sum. Callers pass the whole body's rows,
    so that a hot heart or bladder, which fills a few columns of a few rows, cannot move the reference.
    """
    band = counts[..., rows[0]: rows[1] + 1, :]
    profile = band.sum(axis=tuple(range(band.ndim - 1)))
    reference = np.percentile(profile, 75)
    inside = np.flatnonzero(profile > 0.2 * reference) if reference > 0 else np.arange(len(profile))
    left, right = inside[0], inside[-1] + 1
    return (left + right) / 2, max((right - left) / 2, 1.0)


def region_box_mm(counts: np.ndarray, spacing_mm, spec: PreprocessSpec) -> tuple[float, float, float, float]:
    """The box (row0, row1, col0, col1) in mm that ``spec`` crops from a scan of these counts."""
    rows, cols = counts.shape[-2:]
    sy, sx = spacing_mm
    fractions = REGIONS[spec.region]
    if fractions is None:
        centre_y, centre_x = rows * sy / 2, cols * sx / 2
        half_y, half_x = spec.field_mm[0] / 2, spec.field_mm[1] / 2
        return centre_y - half_y, centre_y + half_y, centre_x - half_x, centre_x + half_x
    top, bottom = body_extent(counts)
    length = bottom + 1 - top
    row0, row1 = (top + f * length for f in fractions["rows"])
    middle, half_width = body_midline(counts, (top, bottom))
    col0, col1 = (middle + f * half_width for f in fractions["cols"])
    return row0 * sy, row1 * sy, col0 * sx, col1 * sx


def _overlap_matrix(n_in: int, step_in: float, start_out: float, stop_out: float, n_out: int) -> np.ndarray:
    """(n_out, n_in) fraction of each input pixel that falls into each output pixel (1-D area overlap)."""
    edges_in = np.arange(n_in + 1) * step_in
    edges_out = np.linspace(start_out, stop_out, n_out + 1)
    low = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    high = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return (np.clip(high - low, 0, None) / step_in).astype(np.float64)


def resample_counts(counts: np.ndarray, spacing_mm, box_mm, grid) -> np.ndarray:
    """Counts ``(V, H, W)`` inside ``box_mm`` on a ``grid`` by exact area overlap (zeros outside the image)."""
    from scipy import sparse

    # Each output pixel overlaps a handful of input pixels: sparse overlap matrices keep this O(pixels).
    rows = sparse.csr_matrix(_overlap_matrix(counts.shape[-2], spacing_mm[0], box_mm[0], box_mm[1], grid[0]))
    cols = sparse.csr_matrix(_overlap_matrix(counts.shape[-1], spacing_mm[1], box_mm[2], box_mm[3], grid[1]))
    return np.stack([(cols @ (rows @ view.astype(np.float64)).T).T for view in counts]).astype(np.float32)


def to_grid(point_rc, spacing_mm, box_mm, grid) -> np.ndarray:
    """Native pixel coordinates (row, col; pixel centres at integers) -> grid pixel coordinates."""
    point = np.asarray(point_rc, float)
    mm = (point + 0.5) * np.asarray(spacing_mm, float)
    scale = np.array([(box_mm[1] - box_mm[0]) / grid[0], (box_mm[3] - box_mm[2]) / grid[1]])
    return (mm - np.array([box_mm[0], box_mm[2]])) / scale - 0.5


def normalise(counts):
    """Network input from grid counts (numpy or torch, ``(..., V, H, W)``): sqrt of counts at unit mean."""
    axes = (-3, -2, -1)
    n_pixels = counts.shape[-1] * counts.shape[-2] * counts.shape[-3]
    if isinstance(counts, np.ndarray):
        total = np.maximum(counts.sum(axis=axes, keepdims=True), 1e-6)
        return np.sqrt(counts / total * n_pixels)
    total = counts.sum(dim=axes, keepdim=True).clamp_min(1e-6)
    return (counts / total * n_pixels).sqrt()


# -------------------------------------------------------------------------------------------- loading
def cache_root(cache_dir=None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("SYNTHSCAN_CACHE"):
        return Path(os.environ["SYNTHSCAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "synthscan" / "grid-counts"


def _cache_key(frame: pd.DataFrame, spec: PreprocessSpec) -> str:
    digest = hashlib.sha256(spec.key().encode())
    for index, row in frame.iterrows():
        path = scan_path(frame, index)
        try:
            stat = path.stat()
        except OSError:
            raise BadInputError(f"study {row['study_id']}: scan file not found: {path}") from None
        digest.update(f"{row['study_id']}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def preprocess_scan(scan, spec: PreprocessSpec):
    """One Scan -> (grid counts, box in mm)."""
    box = region_box_mm(scan.counts, scan.pixel_spacing_mm, spec)
    return resample_counts(scan.counts, scan.pixel_spacing_mm, box, spec.grid), box


def load_grid_scans(frame: pd.DataFrame, spec: PreprocessSpec, cache_dir=None, progress: bool = True,
                    name: str = "scans") -> GridScans:
    """Grid counts of every row of a manifest, read once and then served from the cache."""
    from tqdm import tqdm

    from synthscan.io.dicom import read_scan

    check_views(frame, spec.views)
    folder = cache_root(cache_dir) / _cache_key(frame, spec)
    if (folder / "counts.npy").is_file():
        return GridScans(np.load(folder / "counts.npy"), np.load(folder / "boxes_mm.npy"),
                         np.load(folder / "spacing_mm.npy"))
    counts = np.zeros((len(frame), len(spec.views), *spec.grid), np.float32)
    boxes, spacings = np.zeros((len(frame), 4)), np.zeros((len(frame), 2))
    rows = tqdm(list(enumerate(frame.index)), desc=f"reading {name}", unit="scan", disable=not progress,
                leave=False)
    for position, index in rows:
        path = scan_path(frame, index)
        try:
            scan = read_scan(path, views=spec.views)
        except BadInputError as error:
            raise BadInputError(f"study {frame.loc[index, 'study_id']}: {error}") from None
        counts[position], boxes[position] = preprocess_scan(scan, spec)
        spacings[position] = scan.pixel_spacing_mm
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_dir(folder) as tmp:
            np.save(tmp / "counts.npy", counts)
            np.save(tmp / "boxes_mm.npy", boxes)
            np.save(tmp / "spacing_mm.npy", spacings)
    except OSError:  # another process filled the same cache entry first: identical content
        if not (folder / "counts.npy").is_file():
            raise
    return GridScans(counts, boxes, spacings)


# --------------------------------------------------------------------------------------------- checks
def check_views(frame: pd.DataFrame, views) -> None:
    """Every row must hold the views the classifier needs."""
    have = frame["views"].astype(str)
    missing = [not set(views) <= set(value.split("+")) for value in have]
    if any(missing):
        row = frame.iloc[int(np.flatnonzero(missing)[0])]
        raise BadInputError(f"study {row['study_id']} has views {row['views']!r}, the classifier needs "
                            f"{'+'.join(views)!r}")


def manifest_views(frame: pd.DataFrame, path=None) -> tuple[str, ...]:
    """The views shared by every row (a classifier is built for one V)."""
    values = sorted(set(frame["views"].astype(str)))
    if len(values) != 1:
        raise BadInputError(f"rows mix views {values}; choose the classifier's views with --views", path)
    return VIEW_SETS[values[0]]


def is_synthetic(frame: pd.DataFrame) -> np.ndarray:
    """Synthetic rows by any sign (synthscan/mix.py: the flag, a non-real source, a ``syn-`` study id)."""
    from synthscan.mix import is_synthetic as flags

    return flags(frame).to_numpy(bool)


def refuse_synthetic(frame: pd.DataFrame, path, role: str) -> None:
    """Validation and test sets hold real scans only."""
    synthetic = is_synthetic(frame)
    if synthetic.any():
        first = frame["study_id"].iloc[int(np.flatnonzero(synthetic)[0])]
        raise BadInputError(f"{synthetic.sum()} synthetic row(s) (first: {first}) in a {role} set; "
                            f"{role} sets must hold real scans only", path)


def refuse_overlap(train_patients, frame: pd.DataFrame, path, role: str) -> None:
    """No patient may be both in training and in a validation/test set (leakage)."""
    shared = sorted(set(map(str, train_patients)) & set(frame["patient_id"].astype(str)))
    if shared:
        raise BadInputError(f"leakage: {len(shared)} patient(s) are in both the training set and this {role} "
                            f"set (first: {shared[0]}); split by patient", path)


def task_labels(frame: pd.DataFrame, task: str, path=None) -> np.ndarray:
    """Labels of a task: 0/1 for binary tasks, the Perugini grade 0-3 for ``amyloid_grade``."""
    if task not in TASKS:
        raise BadInputError(f"unknown task {task!r} (choose from {', '.join(TASKS)})", path)
    return labels_for_task(frame, task, path)


def split_train_val(frame: pd.DataFrame, task: str, seed: int, val_fraction: float = 0.2):
    """Patient-grouped, label-stratified validation split of the real rows; synthetic rows stay in training."""
    from synthscan.io.manifest import grouped_split

    synthetic = is_synthetic(frame)
    real = frame[~synthetic].copy()
    real["_stratum"] = task_labels(real, task)
    train, val = grouped_split(real, (1 - val_fraction, val_fraction), stratify="_stratum", seed=seed)
    train = pd.concat([train, frame[synthetic]]).drop(columns="_stratum")
    for part in (train, val):
        part.attrs.update(frame.attrs)
    return train, val.drop(columns="_stratum")


def grouped_folds(frame: pd.DataFrame, task: str, folds: int, seed: int) -> list[np.ndarray]:
    """K patient-grouped, label-stratified folds of the real rows (positions into ``frame``)."""
    from sklearn.model_selection import StratifiedGroupKFold

    real = np.flatnonzero(~is_synthetic(frame))
    patients = frame["patient_id"].astype(str).to_numpy()[real]
    if len(set(patients)) < folds:
        raise BadInputError(f"only {len(set(patients))} real patients: too few for {folds}-fold cross-validation")
    labels = task_labels(frame.iloc[real], task)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [real[test] for _, test in splitter.split(np.zeros(len(real)), labels, patients)]
