"""The heart-to-contralateral (H/CL) ratio baseline for amyloidosis."""

import numpy as np
import pytest

from classify_toy import make_cohort
from evaluation.hcl import hcl_predictions, hcl_ratio
from synthscan.io.manifest import read_manifest

ROWS, COLS, SPACING = 512, 128, (4.8, 4.8)
HEART = (0.29 * 480 + 16, 64 + 0.3 * 38)  # body rows 16-495, midline at column 64, half-width 38


def chest(rng, heart_uptake: float, heart=HEART):
    """A symmetric body (soft tissue, sternum, rib pairs) with optional myocardial uptake at ``heart``."""
    yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(float)
    body = (np.abs(xx - 63.5) < 38) & (yy >= 16) & (yy < 496)
    mean = 6.0 * body
    mean += 20.0 * ((np.abs(xx - 63.5) < 2) & (yy > 120) & (yy < 190))  # sternum
    for rib in range(110, 200, 12):  # rib pairs, mirror images of each other
        mean += 10.0 * body * (np.abs(yy - rib - 0.15 * np.abs(xx - 63.5)) < 1.5)
    mean += heart_uptake * np.exp(-((yy - heart[0]) ** 2 + (xx - heart[1]) ** 2) / (2 * 7.0 ** 2))
    return rng.poisson(mean).astype(np.float32)


def test_no_heart_uptake_gives_a_ratio_near_one(rng):
    result = hcl_ratio(chest(rng, 0.0), SPACING)
    assert result.ratio == pytest.approx(1.0, abs=0.15)


def test_ratio_rises_with_uptake_and_the_roi_finds_the_heart(rng):
    ratios = [hcl_ratio(chest(rng, uptake), SPACING).ratio for uptake in (0, 10, 25, 60)]
    assert ratios == sorted(ratios) and ratios[-1] > 1.5
    strong = hcl_ratio(chest(rng, 60.0), SPACING)
    distance_mm = np.hypot(*((np.array(strong.heart_centre) - HEART) * SPACING))
    assert distance_mm < 20, strong.summary()
    # the contralateral ROI mirrors the heart ROI across the body midline (between columns 63 and 64)
    assert strong.contralateral_centre[0] == strong.heart_centre[0]
    assert strong.heart_centre[1] + strong.contralateral_centre[1] == pytest.approx(127.0)
    assert strong.radius_px == (35 / 4.8, 35 / 4.8)


def test_a_given_heart_centre_is_used_as_is(rng):
    image = chest(rng, 40.0)
    at_heart = hcl_ratio(image, SPACING, heart_centre=HEART)
    away = hcl_ratio(image, SPACING, heart_centre=(HEART[0] + 120, HEART[1]))
    assert at_heart.heart_centre == HEART and at_heart.ratio > 1.3 > away.ratio


def test_hcl_predictions_rank_amyloidosis_above_normal(tmp_path):
    frame = read_manifest(make_cohort(tmp_path / "c", 16, 0.5, seed=5, task="amyloidosis"))
    table = hcl_predictions(frame, progress=False)
    assert list(table.columns) == ["study_id", "site", "task", "label", "score", "seed", "arm"]
    assert set(table["arm"]) == {"hcl"} and set(table["label"]) == {0, 1}
    assert table.loc[table.label == 1, "score"].min() > table.loc[table.label == 0, "score"].max()
