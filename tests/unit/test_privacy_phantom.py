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


def _segment(rr, cc, r0, c0, r1, c1, width):
    dr, dc = r1 - r0, c1 - c0
    t = np.clip(((rr - r0) * dr + (cc - c0) * dc) / max(dr * dr + dc * dc, 1e-9), 0, 1)
    return np.exp(-(((rr - r0 - t * dr) ** 2 + (cc - c0 - t * dc) ** 2) / (2 * width ** 2)))


def _blob(rr, cc, r, c, radius):
    return np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * radius ** 2))


def expected_counts(p: dict) -> np.ndarray:
    """Noise-free counts ``(2, ROWS, COLS)`` of a toy patient (anterior, posterior; both seen from the front)."""
    rr, cc = np.mgrid[0:ROWS, 0:COLS].astype(np.float32)
    top, height, mid, w = p["top"], p["height"], p["centre"], p["width"]

    def row(f):
        return top + f * height

    bone = np.zeros((ROWS, COLS), np.float32)
    skull = np.hypot((rr - row(0.06)) / (0.055 * height), (cc - mid) / (9 * w))
    bone += 1.5 * np.exp(-(((skull - 1) / 0.15) ** 2))
    bone += _segment(rr, cc, row(0.13), mid, row(0.52), mid, 1.6)
    for i in range(10):
        f = 0.17 + 0.018 * i
        for side in (-1, 1):
            bone += 0.5 * _segment(rr, cc, row(f), mid + side * 2, row(f + 0.02), mid + side * 17 * w, 1.0)
    for side in (-1, 1):
        shoulder = (row(0.16), mid + side * 20 * w)
        hand = (row(0.48), mid + side * (22 * w + 60 * p["arm_angle"] * w))
        bone += 0.7 * _segment(rr, cc, *shoulder, *hand, 1.3) + 1.2 * _blob(rr, cc, *shoulder, 2.5)
        bone += 0.9 * _segment(rr, cc, row(0.53), mid + side * 9 * w, row(0.98), mid + side * 6 * w, 1.6)
        bone += 1.2 * _blob(rr, cc, row(0.53), mid + side * 11 * w, 6 * w)
        bone += 1.4 * _blob(rr, cc, row(0.76), mid + side * 7 * w, 2.5)
    for f, offset, strength in p["lesions"]:
        bone += strength * _blob(rr, cc, row(f), mid + offset * 40 * w, 2.0)
    soft = 0.08 * (np.abs(cc - mid) < 22 * w) * (rr > row(0.0)) * (rr < row(1.0))
    bladder = p["bladder"] * _blob(rr, cc, row(0.5), mid, 4.5 * w)
    kidneys = sum(p["kidneys"] * _blob(rr, cc, row(0.33), mid + side * 10 * w, 4 * w) for side in (-1, 1))
    anterior = bone + soft + bladder + 0.4 * kidneys + 0.8 * _segment(rr, cc, row(0.15), mid, row(0.27), mid, 1.5)
    posterior = bone + 0.5 * _segment(rr, cc, row(0.13), mid, row(0.52), mid, 1.6) + soft + 0.6 * bladder + kidneys
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
