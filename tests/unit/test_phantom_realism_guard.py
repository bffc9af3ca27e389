"""Regression guard: the phantom's normal anterior views at NM1's settings stay near the one real scan.

Same statistics and tolerances as benchmarks/phantom_realism.py (evaluation/realism.py): regional shares
+-0.05, mean body-axis profile L1 <= 0.25, bladder-to-bone within 50 %, zero share +-0.15, body-pixel median
and 99th percentile within 30 %, high-frequency noise power ratio +-0.15, total counts within 1 %. One real
image proves little; this only stops the simulator from drifting away from it unnoticed.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from scipy import ndimage

from evaluation.realism import compare, view_statistics
from synthscan.io.dicom import read_scan
from synthscan.phantom.cohort import draw_patient, draw_study, render
from synthscan.phantom.sites import SITES

SITE = SITES["aurora-dpd"]  # GE, LEHR, 1024x256 at 2.26 mm: NM1's camera settings
SEED, N_SCANS = 2026, 8  # the first scans of the benchmark's cohort


@pytest.fixture(scope="module")
def nm1():
    scan = read_scan(get_testdata_file("JPEG-LL.dcm"), views=("anterior",))
    return scan.view("anterior"), view_statistics(scan.view("anterior"), scan.pixel_spacing_mm[1])


@pytest.fixture(scope="module")
def phantom(nm1):
    assert SITE.shape == (1024, 256) and SITE.pixel_spacing_mm == 2.26
    counts = nm1[1].total_counts
    return [view_statistics(render(draw_study(draw_patient(SITE, SEED, index, metastasis=False, amyloid_grade=0),
                                              0, anterior_counts=counts)).scan.view("anterior"), 2.26)
            for index in range(N_SCANS)]


def test_statistics_reproduce_the_published_nm1_figures(nm1):
    """PHANTOM.md: 3,596,452 counts, body rows 90-853, shares 0.086/0.389/0.296/0.229, half the pixels 0,
    body median 23 and 99th percentile 113; unfiltered Poisson noise at high frequencies."""
    _, reference = nm1
    assert reference.total_counts == 3_596_452
    assert abs(reference.body_rows[0] - 90) <= 1 and abs(reference.body_rows[1] - 853) <= 1
    np.testing.assert_allclose(reference.regional_shares, (0.086, 0.389, 0.296, 0.229), atol=0.002)
    assert reference.profile.sum() == pytest.approx(1.0) and len(reference.profile) == 100
    assert reference.zero_share == pytest.approx(0.495, abs=0.002)
    assert reference.body_median == 23 and 112 <= reference.body_p99 <= 113
    assert reference.noise_power_ratio == pytest.approx(1.0, abs=0.05)
    assert 2.5 < reference.bladder_to_bone < 3.5  # bladder peak 239 (smoothed) over thorax bone ~80


def test_phantom_stays_within_tolerance_of_nm1(nm1, phantom):
    outside = [c for c in compare(nm1[1], phantom) if not c.within]
    assert not outside, "\n".join(f"{c.statistic}: NM1 {c.reference:.4g}, phantom mean {c.mean:.4g} "
                                  f"(range {c.low:.4g}-{c.high:.4g}), tolerance {c.tolerance}" for c in outside)


def test_the_guard_catches_smoothing_and_a_wrong_body_axis(nm1):
    """The statistics can fail: a post-filter kills high-frequency noise; a scan cut at the knees moves shares."""
    image, reference = nm1
    smoothed = view_statistics(ndimage.gaussian_filter(image, 1.0), 2.26)
    assert smoothed.noise_power_ratio < 0.1
    cut = image.copy()
    cut[500:] = 0
    failed = {c.statistic for c in compare(reference, [view_statistics(cut, 2.26)]) if not c.within}
    assert {"share_thorax", "share_legs", "profile_l1"} <= failed
    assert not [c for c in compare(reference, [reference]) if not c.within]
