"""H/CL, region crops and Grad-CAM localisation on phantom scans, against the phantom's ground truth."""

import numpy as np
import pytest

from evaluation.data import PreprocessSpec, region_box_mm
from evaluation.hcl import hcl_ratio
from synthscan.phantom.cohort import draw_patient, draw_study, render
from synthscan.phantom.sites import get_site


def phantom_study(site: str, index: int, **disease):
    """One rendered phantom study (scan + ground truth) with a fixed disease."""
    patient = draw_patient(get_site(site), 7, index, repeat=False, **disease)
    return render(draw_study(patient, 0))


@pytest.fixture(scope="module")
def amyloid_pairs():
    """DPD scans of the same bodies without and with grade-3 cardiac uptake."""
    return [(phantom_study("delta-dpd", i, metastasis=False, amyloid_grade=0),
             phantom_study("delta-dpd", i, metastasis=False, amyloid_grade=3)) for i in range(4)]


def test_hcl_finds_the_phantom_heart_and_rises_with_uptake(amyloid_pairs):
    for normal, amyloid in amyloid_pairs:
        heart = (amyloid.truth["heart"]["row"], amyloid.truth["heart"]["col"])
        spacing = amyloid.scan.pixel_spacing_mm
        result = hcl_ratio(amyloid.scan.view("anterior"), spacing)
        assert np.hypot(*((np.array(result.heart_centre) - heart) * spacing)) < 25, result.summary()
        baseline = hcl_ratio(normal.scan.view("anterior"), spacing)
        assert result.ratio > 1.6 and result.ratio > baseline.ratio + 0.3
        # at the true heart position too, and the contralateral ROI is the mirror image
        oracle = hcl_ratio(amyloid.scan.view("anterior"), spacing, heart_centre=heart)
        assert oracle.ratio > 1.4 and oracle.contralateral_centre[1] < amyloid.scan.shape[1] / 2 < heart[1]


def test_region_crops_hold_the_phantom_heart(amyloid_pairs):
    for _, study in amyloid_pairs:
        heart_mm = np.array([study.truth["heart"]["row"] + 0.5, study.truth["heart"]["col"] + 0.5]) * \
            study.scan.pixel_spacing_mm
        for region in ("thorax", "heart"):
            box = region_box_mm(study.scan.counts, study.scan.pixel_spacing_mm, PreprocessSpec(region=region))
            margin = 40 if region == "heart" else 80  # mm between the heart centre and the box edges
            assert box[0] + margin < heart_mm[0] < box[1] - margin, (region, box, heart_mm)
            assert box[2] + margin < heart_mm[1] < box[3] - margin, (region, box, heart_mm)
