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


@pytest.mark.slow
def test_grad_cam_points_at_phantom_metastases(tmp_path):
    """A CPU-sized classifier trained on a phantom generator-site cohort, explained on an external site.

    Measured (2026-11-23): 19-20/26 hits within 100 mm on elm-mdp; uniform chance 27% (p < 1e-6); the other
    scans' peaks (the anatomical prior: metastases cluster in the spine and pelvis) hit 56-59%, p 0.004-0.05
    depending on the phantom version, so only "above the prior", not its significance, is asserted.
    """
    import json

    from synthscan.cli import main

    def run(*argv):
        assert main([str(a) for a in argv]) == 0

    run("phantom", "--site", "aurora-dpd", "--n-patients", 300, "--seed", 11, "--out", tmp_path / "train", "--quiet")
    run("phantom", "--site", "elm-mdp", "--n-patients", 100, "--seed", 13, "--out", tmp_path / "test", "--quiet")
    run("classify", "train", "--train", tmp_path / "train" / "manifest.csv", "--arch", "tiny", "--strategy",
        "conventional", "--steps", 600, "--eval-every", 50, "--out", tmp_path / "run", "--cache", tmp_path / "cache",
        "--quiet")
    run("cam", "--model", tmp_path / "run", "--scans", tmp_path / "test" / "manifest.csv", "--positives",
        "--out", tmp_path / "cams", "--cache", tmp_path / "cache", "--quiet")
    summary = json.loads((tmp_path / "cams" / "cam_summary.json").read_text())
    assert summary["pointing_game_n"] >= 15
    assert summary["hit_rate"] > summary["chance_rate"] and summary["p_value"] < 1e-3, summary["summary"]
    assert summary["hit_rate"] > summary["shuffled_rate"], summary["summary"]
