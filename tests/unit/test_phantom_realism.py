"""Realism of the phantom in numbers: the NM1 reference scan of /work/shared/PHANTOM.md and acquisition physics.

NM1 settings: 1024x256, 2.26 mm pixels, 3.6 M counts in the anterior view (the generator site aurora-dpd has
that matrix and spacing; the counts are fixed here). Tolerances as in the foundation issue: regional count
shares +-0.05, median and 99th percentile of body pixels within 30 %, zero pixels 0.35-0.65.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage, stats

from synthscan.phantom.acquisition import (COLLIMATORS, FWHM_TO_SIGMA, MU_PER_MM, Camera, Emitters,
                                           expected_counts, poisson_counts)
from synthscan.phantom.cohort import draw_patient, draw_study, expected, landmarks, render
from synthscan.phantom.sites import SITES

NM1_COUNTS = 3.6e6
NM1_SHARES = (0.086, 0.389, 0.296, 0.229)  # head, thorax, abdomen/pelvis, legs (PHANTOM.md)
REGIONS = (0.0, 0.12, 0.35, 0.55, 1.0)
NM1_MEDIAN, NM1_P99 = 23.0, 113.0
SITE = SITES["aurora-dpd"]


def _study(site, index, seed=11, counts=NM1_COUNTS, **disease):
    return render(draw_study(draw_patient(site, seed, index, **disease), 0, anterior_counts=counts))


def _regional_shares(image: np.ndarray) -> np.ndarray:
    """Share of counts in head/thorax/abdomen-pelvis/legs, by fractions of the body's length on the image."""
    profile = image.sum(axis=1)
    rows = np.flatnonzero(profile > 0.01 * profile.max())
    top, length = rows[0], rows[-1] - rows[0] + 1
    bounds = [top + int(round(f * length)) for f in REGIONS]
    return np.array([image[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])]) / image.sum()


def _disk_mean(image, row, col, radius):
    rr, cc = np.ogrid[: image.shape[0], : image.shape[1]]
    return float(image[(rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2].mean())


@pytest.fixture(scope="module")
def normals():
    """Ten normal patients (no metastasis, amyloid grade 0; benign findings as they come) at NM1 settings."""
    assert SITE.shape == (1024, 256) and SITE.pixel_spacing_mm == 2.26
    return [_study(SITE, i, metastasis=False, amyloid_grade=0) for i in range(10)]


def test_regional_count_shares_match_nm1(normals):
    shares = np.array([_regional_shares(s.scan.view("anterior")) for s in normals])
    np.testing.assert_allclose(shares.mean(axis=0), NM1_SHARES, atol=0.05)
    assert np.abs(shares - NM1_SHARES).max() < 0.1  # every single scan is near, not only the mean


def test_pixel_statistics_match_nm1(normals):
    anterior = [s.scan.view("anterior") for s in normals]
    zero_share = np.mean([(a == 0).mean() for a in anterior])
    assert 0.35 <= zero_share <= 0.65  # NM1: 0.495
    median = np.mean([np.median(a[a > 0]) for a in anterior])
    p99 = np.mean([np.percentile(a[a > 0], 99) for a in anterior])
    assert abs(median / NM1_MEDIAN - 1) < 0.3, median
    assert abs(p99 / NM1_P99 - 1) < 0.3, p99


def test_bladder_is_the_hottest_object_in_most_normal_scans(normals):
    hottest = 0
    for study in normals:
        image = ndimage.uniform_filter(study.scan.view("anterior"), 3)  # objects, not single noisy pixels
        row, col = np.unravel_index(np.argmax(image), image.shape)
        bladder = study.truth["organs"]["bladder"]
        hottest += np.hypot(row - bladder["row"], col - bladder["col"]) < 40 / 2.26
    assert hottest >= 7, hottest


def test_counts_match_the_site_setting_within_poisson_error():
    study = _study(SITE, 0, counts=2.0e6)
    total = study.scan.view("anterior").sum()
    assert abs(total - 2.0e6) < 4 * np.sqrt(2.0e6)
    assert np.array_equal(study.scan.counts, np.rint(study.scan.counts))  # integer counts, as stored
    # A post-filtering site keeps its totals up to rounding of the smoothed image (documented: < 1 %).
    fjord = _study(SITES["fjord-hdp"], 0, counts=2.0e6)
    assert abs(fjord.scan.view("anterior").sum() / 2.0e6 - 1) < 0.01


def test_kidneys_are_fainter_in_superscans():
    for index in range(3):
        ratios = []
        for superscan in (False, True):
            study = _study(SITE, index, metastasis=superscan, superscan=superscan, amyloid_grade=0, benign=False)
            posterior = study.scan.view("posterior")
            kidneys = np.mean([_disk_mean(posterior, o["row"], o["col"], 6) for name, o in
                               study.truth["organs"].items() if name.startswith("kidney")])
            bone = _disk_mean(posterior, *landmarks(study.spec)["lumbar"], 5)
            ratios.append(kidneys / bone)
        assert ratios[1] < 0.5 * ratios[0], ratios


def test_superscan_skeleton_takes_the_counts():
    normal = _study(SITE, 1, metastasis=False, amyloid_grade=0, benign=False)
    superscan = _study(SITE, 1, metastasis=True, superscan=True, amyloid_grade=0, benign=False)
    spine = landmarks(normal.spec)["lumbar"]
    for study in (normal, superscan):
        assert study.scan.view("anterior").sum() == pytest.approx(NM1_COUNTS, rel=0.01)
    ratio = [_disk_mean(s.scan.view("posterior"), *spine, 5) / s.scan.view("posterior").mean()
             for s in (normal, superscan)]
    assert ratio[1] > 1.5 * ratio[0]  # bone against the whole image
    bladder = [_disk_mean(s.scan.view("anterior"), s.truth["organs"]["bladder"]["row"],
                          s.truth["organs"]["bladder"]["col"], 6) for s in (normal, superscan)]
    assert bladder[1] < bladder[0]


def _heart_to_contralateral(study) -> float:
    anterior = study.scan.view("anterior")
    heart = study.truth["heart"]
    midline = landmarks(study.spec)["thoracic"][1]
    return _disk_mean(anterior, heart["row"], heart["col"], 8) / _disk_mean(anterior, heart["row"],
                                                                            2 * midline - heart["col"], 8)


@pytest.fixture(scope="module")
def heart_ratios():
    """Mean H/CL (anterior) per tracer and Perugini grade over three patients."""
    ratios = {}
    for tracer in ("DPD", "MDP"):
        site = dataclasses.replace(SITE, tracer=tracer)
        for grade in range(4):
            ratios[tracer, grade] = np.mean([_heart_to_contralateral(
                _study(site, i, metastasis=False, amyloid_grade=grade, benign=False)) for i in range(3)])
    return ratios


def test_heart_to_bone_ratio_rises_with_grade(heart_ratios):
    dpd = [heart_ratios["DPD", g] for g in range(4)]
    assert all(b > a + 0.05 for a, b in zip(dpd, dpd[1:])), dpd
    assert 0.85 < dpd[0] < 1.35  # grade 0: blood pool only


def test_mdp_shows_amyloid_more_weakly_than_dpd(heart_ratios):
    for grade in (1, 2, 3):
        excess_mdp = heart_ratios["MDP", grade] - heart_ratios["MDP", 0]
        excess_dpd = heart_ratios["DPD", grade] - heart_ratios["DPD", 0]
        assert excess_mdp < 0.5 * excess_dpd, (grade, excess_mdp, excess_dpd)


def test_grade_3_heart_is_above_bone():
    study = _study(SITE, 2, metastasis=False, amyloid_grade=3, benign=False)
    anterior = study.scan.view("anterior")
    heart = _disk_mean(anterior, study.truth["heart"]["row"], study.truth["heart"]["col"], 6)
    ribs = _disk_mean(anterior, *landmarks(study.spec)["ribs_left"], 3)  # mean rib position: lateral chest wall
    sternum = _disk_mean(anterior, *landmarks(study.spec)["sternum"], 3)
    assert heart > max(ribs, sternum)


def _part_signal(spec, part: str) -> np.ndarray:
    """Counts each view gets from one bone part: the noise-free difference made by doubling its uptake."""
    from synthscan.phantom.anatomy import PART

    doubled = list(spec.part_scale)
    doubled[PART[part]] *= 2
    base, _ = expected(spec)
    more, _ = expected(dataclasses.replace(spec, part_scale=tuple(doubled)))
    return (more - base).sum(axis=(1, 2))  # (anterior, posterior)


@pytest.mark.parametrize("part", ["sternum", "patella", "face", "clavicle"])
def test_anterior_bones_are_brighter_anteriorly(part):
    spec = draw_study(draw_patient(SITE, 11, 0, metastasis=False, amyloid_grade=0, benign=False))
    anterior, posterior = _part_signal(spec, part)
    assert anterior > 1.5 * posterior


@pytest.mark.parametrize("part", ["thoracic", "lumbar", "scapula", "sacrum"])
def test_posterior_bones_are_brighter_posteriorly(part):
    spec = draw_study(draw_patient(SITE, 11, 0, metastasis=False, amyloid_grade=0, benign=False))
    anterior, posterior = _part_signal(spec, part)
    assert posterior > 1.5 * anterior


def test_spine_scapulae_and_kidneys_brighter_posteriorly_in_the_scan():
    for index in range(2):
        study = _study(SITE, index, metastasis=False, amyloid_grade=0, benign=False)
        anterior, posterior = study.scan.view("anterior"), study.scan.view("posterior")
        marks = landmarks(study.spec)

        def ratio(part, radius=4):
            return _disk_mean(anterior, *marks[part], radius) / _disk_mean(posterior, *marks[part], radius)

        assert ratio("lumbar") < 0.7
        assert ratio("scapula_left", 6) < 0.8 and ratio("scapula_right", 6) < 0.8
        assert ratio("face") > 1.3
        for kidney in ("kidney_left", "kidney_right"):
            centre = study.truth["organs"][kidney]
            assert _disk_mean(anterior, centre["row"], centre["col"], 6) < _disk_mean(posterior, centre["row"],
                                                                                      centre["col"], 6)


def test_metastases_are_hot_spots_where_the_ground_truth_says():
    normal = _study(SITE, 4, metastasis=False, amyloid_grade=0, benign=False)
    metastatic = _study(SITE, 4, metastasis=True, superscan=False, lesion_count=12, amyloid_grade=0, benign=False)
    assert metastatic.truth["lesions"] and normal.spec.body == metastatic.spec.body
    brighter = 0
    hot = [lesion for lesion in metastatic.truth["lesions"] if lesion["kind"] == "metastasis" and lesion["ratio"] >= 2.5]
    for lesion in hot:
        with_lesion = max(_disk_mean(v, lesion["row"], lesion["col"], 2) for v in metastatic.scan.counts)
        without = max(_disk_mean(v, lesion["row"], lesion["col"], 2) for v in normal.scan.counts)
        brighter += with_lesion > 1.2 * without
    assert hot and brighter >= 0.8 * len(hot)


def _point_source_image(depth_fraction, collimator="LEHR", scatter=0.0, thickness_mm=200.0):
    camera = Camera((128, 64), (2.0, 2.0), COLLIMATORS[collimator], gap_mm=50.0, scatter_fraction=scatter,
                    nonuniformity=0.0)
    emitters = Emitters(np.array([64.0]), np.array([32.0]), np.array([depth_fraction]), np.array([1000.0]))
    thickness = np.full(camera.shape, thickness_mm, np.float32)
    return expected_counts(emitters, 0.0, thickness, np.zeros_like(thickness), camera)


def _fwhm_mm(profile, spacing=2.0):
    sigma = np.sqrt(np.sum(profile * (np.arange(profile.size) - np.average(np.arange(profile.size), weights=profile)) ** 2)
                    / profile.sum())
    return sigma * spacing / FWHM_TO_SIGMA


@pytest.mark.parametrize("collimator", ["LEHR", "LEGP"])
def test_point_source_blur_grows_linearly_with_distance(collimator):
    near, far = _point_source_image(0.1, collimator), _point_source_image(0.9, collimator)
    lehr = COLLIMATORS[collimator]
    for image, distance_anterior, distance_posterior in ((near, 50 + 20, 50 + 180), (far, 50 + 180, 50 + 20)):
        for view, distance in ((0, distance_anterior), (1, distance_posterior)):
            measured = _fwhm_mm(image[view].sum(axis=0))
            # the depth layer's mean distance is the source's own, so the blur is exact up to pixel splatting
            assert measured == pytest.approx(float(lehr.fwhm_mm(distance)), rel=0.08), (view, distance)


def test_legp_is_blurrier_than_lehr_at_10_cm():
    assert COLLIMATORS["LEGP"].fwhm_mm(100) > COLLIMATORS["LEHR"].fwhm_mm(100)
    assert 7.0 <= COLLIMATORS["LEHR"].fwhm_mm(100) <= 8.0 and 9.0 <= COLLIMATORS["LEGP"].fwhm_mm(100) <= 10.0


def test_attenuation_follows_depth():
    image = _point_source_image(0.25)
    ratio = image[0].sum() / image[1].sum()
    assert ratio == pytest.approx(np.exp(-MU_PER_MM * (50 - 150)), rel=0.01)


def test_scatter_adds_its_share_of_counts():
    primary, scattered = _point_source_image(0.5, scatter=0.0), _point_source_image(0.5, scatter=0.3)
    assert scattered[0].sum() / primary[0].sum() == pytest.approx(1 / 0.7, rel=0.02)


@pytest.mark.parametrize("mean", [0.05, 0.4, 0.95, 3.0, 40.0])
def test_poisson_counts_are_poisson(mean):
    rng = np.random.default_rng(5)
    counts = poisson_counts(rng, np.full(200_000, mean))
    assert counts.mean() == pytest.approx(mean, rel=0.02, abs=0.002)
    assert counts.var() == pytest.approx(mean, rel=0.03, abs=0.003)
    values, observed = np.unique(counts, return_counts=True)
    expected = stats.poisson.pmf(values, mean) * counts.size
    keep = expected > 20
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < stats.chi2.ppf(0.999, max(keep.sum() - 1, 1))
