"""A small seeded stand-in for whole-body bone scans, for the memorization-audit tests (and its own checks).

Each toy patient differs in height, table position, lateral offset, habitus, arm pose, bladder and kidney
uptake and metastatic hot spots, so that two patients are never as close as two acquisitions of one. Views
are 512x128 (4.8 mm pixels) with realistic totals (0.4-1.5 M counts per view). The integration tests load
this file by path (tests/unit is not a package).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from synthscan.scan import Scan

ROWS, COLS, SPACING_MM = 512, 128, (4.8, 4.8)


def patient(rng: np.random.Generator) -> dict:
    """Random anatomy and disease of one toy patient."""
    return {
        "top": rng.uniform(0.02, 0.10) * ROWS, "height": rng.uniform(0.78, 0.92) * ROWS,
        "centre": COLS / 2 + rng.uniform(-6, 6), "width": rng.uniform(0.85, 1.2),
        "arm_angle": rng.uniform(0.0, 0.25), "bladder": rng.uniform(1.0, 8.0), "kidneys": rng.uniform(0.2, 1.5),
        "lesions": [(rng.uniform(0.12, 0.6), rng.normal(0, 0.08), rng.uniform(2.0, 6.0))
                    for _ in range(rng.integers(0, 12))],
        "total_counts": rng.uniform(0.4e6, 1.5e6),
    }


def _window(r_low, r_high, c_low, c_high):
    rows = slice(max(0, int(r_low)), min(ROWS, int(np.ceil(r_high)) + 1))
    cols = slice(max(0, int(c_low)), min(COLS, int(np.ceil(c_high)) + 1))
    rr, cc = np.mgrid[rows, cols].astype(np.float32)
    return (rows, cols), rr, cc


def _segment(image, r0, c0, r1, c1, width, value):
    """Add a Gaussian-profile line from (r0, c0) to (r1, c1), drawn only near the line (fast)."""
    margin = 4 * width
    window, rr, cc = _window(min(r0, r1) - margin, max(r0, r1) + margin, min(c0, c1) - margin, max(c0, c1) + margin)
    dr, dc = r1 - r0, c1 - c0
    t = np.clip(((rr - r0) * dr + (cc - c0) * dc) / max(dr * dr + dc * dc, 1e-9), 0, 1)
    image[window] += value * np.exp(-(((rr - r0 - t * dr) ** 2 + (cc - c0 - t * dc) ** 2) / (2 * width ** 2)))


def _blob(image, r, c, radius, value):
    _segment(image, r, c, r, c, radius, value)


def expected_counts(p: dict) -> np.ndarray:
    """Noise-free counts ``(2, ROWS, COLS)`` of a toy patient (anterior, posterior; both seen from the front)."""
    top, height, mid, w = p["top"], p["height"], p["centre"], p["width"]

    def row(f):
        return top + f * height

    bone = np.zeros((ROWS, COLS), np.float32)
    window, rr, cc = _window(row(0.0) - 5, row(0.13), mid - 15 * w, mid + 15 * w)
    skull = np.hypot((rr - row(0.06)) / (0.055 * height), (cc - mid) / (9 * w))
    bone[window] += 1.5 * np.exp(-(((skull - 1) / 0.15) ** 2))
    _segment(bone, row(0.13), mid, row(0.52), mid, 1.6, 1.0)
    for i in range(10):
        f = 0.17 + 0.018 * i
        for side in (-1, 1):
            _segment(bone, row(f), mid + side * 2, row(f + 0.02), mid + side * 17 * w, 1.0, 0.5)
    for side in (-1, 1):
        shoulder = (row(0.16), mid + side * 20 * w)
        hand = (row(0.48), mid + side * (22 * w + 60 * p["arm_angle"] * w))
        _segment(bone, *shoulder, *hand, 1.3, 0.7)
        _blob(bone, *shoulder, 2.5, 1.2)
        _segment(bone, row(0.53), mid + side * 9 * w, row(0.98), mid + side * 6 * w, 1.6, 0.9)
        _blob(bone, row(0.53), mid + side * 11 * w, 6 * w, 1.2)
        _blob(bone, row(0.76), mid + side * 7 * w, 2.5, 1.4)
    for f, offset, strength in p["lesions"]:
        _blob(bone, row(f), mid + offset * 40 * w, 2.0, strength)
    anterior, posterior = bone.copy(), bone
    rr, cc = np.mgrid[0:ROWS, 0:COLS].astype(np.float32)
    soft = 0.08 * (np.abs(cc - mid) < 22 * w) * (rr > row(0.0)) * (rr < row(1.0))
    anterior += soft
    posterior += soft
    _blob(anterior, row(0.5), mid, 4.5 * w, p["bladder"])
    _blob(posterior, row(0.5), mid, 4.5 * w, 0.6 * p["bladder"])
    for side in (-1, 1):
        _blob(anterior, row(0.33), mid + side * 10 * w, 4 * w, 0.4 * p["kidneys"])
        _blob(posterior, row(0.33), mid + side * 10 * w, 4 * w, p["kidneys"])
    _segment(anterior, row(0.15), mid, row(0.27), mid, 1.5, 0.8)  # sternum, seen from the front
    _segment(posterior, row(0.13), mid, row(0.52), mid, 1.6, 0.5)  # spine, nearer the posterior detector
    views = np.stack([gaussian_filter(v, 1.5) for v in (anterior, posterior)])
    return views * (p["total_counts"] / views.sum(axis=(1, 2), keepdims=True))


def acquire(expected: np.ndarray, rng: np.random.Generator) -> Scan:
    """Poisson counts of an expected image: one acquisition."""
    return Scan(rng.poisson(expected).astype(np.float32), SPACING_MM)


def cohort(n: int, seed: int) -> list[Scan]:
    """``n`` independent toy patients, one scan each."""
    rng = np.random.default_rng(seed)
    return [acquire(expected_counts(patient(rng)), rng) for _ in range(n)]


def test_toy_cohort_is_seeded_and_plausible():
    first, again = cohort(3, seed=5), cohort(3, seed=5)
    assert all(np.array_equal(a.counts, b.counts) for a, b in zip(first, again))
    for scan in first:
        assert scan.shape == (ROWS, COLS) and 0.3e6 < scan.counts[0].sum() < 1.6e6
        assert scan.counts.max() < 65535
    assert not np.array_equal(first[0].counts, first[1].counts)
