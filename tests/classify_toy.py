"""A toy cohort for classifier tests: bright spots ("lesions") on a noisy body, written as NM DICOM + manifest.

Not the phantom: a hand-made stand-in with known lesion centres, small enough to train on in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from synthscan.io.dicom import write_scan
from synthscan.io.manifest import write_manifest
from synthscan.scan import Scan

ROWS, COLS = 128, 32
SPACING_MM = (2460.0 / ROWS, 615.0 / COLS)  # fills the classifier's whole-body field


def spot_scan(rng, lesions: int, views=("anterior", "posterior"), heart: float = 0.0):
    """Counts of one toy scan and its lesion centres (row, col) in native pixels."""
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    body = ((np.abs(xx - COLS / 2 + 0.5) < COLS * 0.35) & (yy > 4) & (yy < ROWS - 4)).astype(float)
    # The background level varies between scans more than lesions change the total, so that a classifier
    # cannot find lesions from the normalised background alone and has to look at the spots.
    mean = rng.uniform(2.5, 7.0) * body
    centres = []
    for _ in range(lesions):
        r, c = rng.uniform(12, ROWS - 12), rng.uniform(COLS * 0.25, COLS * 0.75)
        mean = mean + 40.0 * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * 1.5 ** 2))
        centres.append((float(r), float(c)))
    if heart:  # uptake in the patient's left lower chest (high columns)
        mean = mean + heart * np.exp(-((yy - 0.28 * ROWS) ** 2 / 8 ** 2 + (xx - 0.62 * COLS) ** 2 / 3 ** 2) / 2)
    counts = np.stack([rng.poisson(mean) for _ in views]).astype(np.float32)
    return counts, centres


def make_cohort(folder, n: int, positive_fraction: float = 0.5, seed: int = 0, site: str = "toy",
                patient_prefix: str = "p", views=("anterior", "posterior"), synthetic: bool = False,
                task: str = "metastasis") -> Path:
    """Write ``n`` toy scans under ``folder`` with manifest.csv and lesions.json; return the manifest path."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    rows, lesions = [], {}
    for i in range(n):
        positive = rng.random() < positive_fraction
        grade = int(rng.integers(2, 4)) if positive and task == "amyloidosis" else 0
        n_lesions = int(rng.integers(1, 4)) if positive and task == "metastasis" else 0
        counts, centres = spot_scan(rng, n_lesions, views, heart=25.0 * grade)
        study = f"{site}-{i:04d}"
        write_scan(folder / f"{study}.dcm", Scan(counts, SPACING_MM, tuple(views)))
        lesions[study] = centres
        rows.append({"study_id": study, "patient_id": f"{patient_prefix}{i:04d}", "site": site,
                     "path": f"{study}.dcm", "views": "+".join(views), "rows": ROWS, "cols": COLS,
                     "pixel_spacing_mm": SPACING_MM[0], "metastasis": int(n_lesions > 0), "amyloid_grade": grade,
                     "lesion_count": n_lesions, "synthetic": int(synthetic), "tracer": "DPD"})
    (folder / "lesions.json").write_text(json.dumps(lesions))
    return write_manifest(pd.DataFrame(rows), folder / "manifest.csv")
