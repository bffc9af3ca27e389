"""The phantom's sites, patients, studies and records: seeding, case mix, outcomes, identities, manifests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthscan.errors import BadInputError
from synthscan.io.dicom import META_KEYS
from synthscan.io.manifest import COLUMNS, validate_manifest
from synthscan.phantom import PHANTOM_VERSION
from synthscan.phantom.cohort import (dicom_meta, draw_patient, draw_study, manifest_row, render,
                                      simulate_patient)
from synthscan.phantom.sites import SITES, describe_sites, get_site

SMALL = SITES["elm-mdp"]  # 512x128: cheap to render


def test_registry_has_the_sites_the_experiment_needs():
    assert len(SITES) >= 6
    roles = [s.role for s in SITES.values()]
    assert roles.count("generator") == 1 and roles.count("training") == 1 and roles.count("external") >= 4
    generator = next(s for s in SITES.values() if s.role == "generator")
    assert generator.tracer in ("DPD", "HMDP", "HDP")
    assert generator.case_mix.metastasis >= 0.25 and sum(generator.case_mix.amyloid_grades[2:]) >= 0.10
    training = next(s for s in SITES.values() if s.role == "training")
    assert training.tracer == "MDP" and training.case_mix.metastasis < 0.15
    external = [s for s in SITES.values() if s.role == "external"]
    assert {s.tracer for s in external} >= {"MDP", "DPD"} and {s.tracer for s in external} & {"HMDP", "HDP"}
    assert {s.collimator for s in external} == {"LEHR", "LEGP"}
    assert {s.shape for s in external} == {(1024, 256), (512, 128)}
    for site in SITES.values():
        low_resolution = site.shape == (512, 128)
        assert (4.5 <= site.pixel_spacing_mm <= 4.8) if low_resolution else (2.26 <= site.pixel_spacing_mm <= 2.4)
        assert 0.5e6 <= site.counts_median <= 4e6
        assert abs(sum(site.case_mix.amyloid_grades) - 1) < 1e-9
    assert any(s.posterior_mirrored for s in external) and any(s.post_filter_sigma_px > 0 for s in external)
    assert len(describe_sites().splitlines()) == len(SITES)


def test_unknown_site_names_the_valid_ones():
    with pytest.raises(BadInputError) as error:
        get_site("vienna")
    assert "vienna" in str(error.value) and all(name in str(error.value) for name in SITES)


def test_same_seed_same_scan_and_other_seed_other_scan():
    first = simulate_patient(SMALL, 3, 5)[0]
    again = simulate_patient(SMALL, 3, 5)[0]
    other = simulate_patient(SMALL, 4, 5)[0]
    assert np.array_equal(first.scan.counts, again.scan.counts) and first.truth == again.truth
    assert not np.array_equal(first.scan.counts, other.scan.counts)


def test_scan_follows_the_orientation_rule_and_site_matrix():
    study = render(draw_study(draw_patient(SITES["delta-dpd"], 1, 0, metastasis=False, amyloid_grade=2)))
    assert study.scan.views == ("anterior", "posterior") and study.scan.shape == (1024, 256)
    assert study.scan.counts.dtype == np.float32 and np.array_equal(study.scan.counts, np.rint(study.scan.counts))
    heart = study.truth["heart"]
    bladder = study.truth["organs"]["bladder"]
    assert heart["col"] > bladder["col"] + 5  # the heart is on the patient's left: higher columns, both views
    assert heart["row"] < bladder["row"]  # head at row 0


@pytest.fixture(scope="module")
def generator_patients():
    return [draw_patient(SITES["aurora-dpd"], 2, i) for i in range(400)]


def test_case_mix_is_drawn_as_configured(generator_patients):
    mix = SITES["aurora-dpd"].case_mix
    metastatic = np.mean([p.metastasis for p in generator_patients])
    amyloid = np.mean([p.amyloid_grade >= 2 for p in generator_patients])
    assert abs(metastatic - mix.metastasis) < 0.07 and abs(amyloid - sum(mix.amyloid_grades[2:])) < 0.05
    counts = [p.lesions_per_study[0] for p in generator_patients if p.metastasis and not p.superscan]
    assert min(counts) >= 1 and max(counts) >= 11  # one to dozens
    assert any(p.superscan for p in generator_patients)
    repeat = [p for p in generator_patients if len(p.study_offsets_days) > 1]
    assert 0.1 < len(repeat) / len(generator_patients) < 0.4
    assert all(np.all(np.diff(p.study_offsets_days) > 0) for p in repeat)
    assert all(p.study_offsets_days[-1] < p.time_days for p in repeat)  # no study after death or censoring


def test_survival_worsens_with_metastatic_burden_and_is_censored(generator_patients):
    times = pd.DataFrame({"time": [p.time_days for p in generator_patients],
                          "event": [p.event for p in generator_patients],
                          "metastasis": [p.metastasis for p in generator_patients]})
    assert 0.2 < times["event"].mean() < 0.9  # deaths and censoring both common
    from lifelines import CoxPHFitter

    fit = CoxPHFitter().fit(times, "time", "event")
    assert fit.hazard_ratios_["metastasis"] > 2 and fit.summary.loc["metastasis", "p"] < 1e-4


def test_repeat_studies_show_progression_and_a_new_position():
    patient = next(p for p in (draw_patient(SMALL, 9, i, metastasis=True, superscan=False, repeat=True)
                               for i in range(40)) if len(p.study_offsets_days) > 1)
    assert list(patient.lesions_per_study) == sorted(patient.lesions_per_study)
    first, second = draw_study(patient, 0), draw_study(patient, 1)
    assert first.body.height_mm == second.body.height_mm and first.body.top_mm != second.body.top_mm


def test_ground_truth_lists_every_lesion_inside_the_image():
    study = render(draw_study(draw_patient(SMALL, 1, 2, metastasis=True, superscan=False, lesion_count=9)))
    metastases = [l for l in study.truth["lesions"] if l["kind"] in ("metastasis", "cold")]
    assert len(metastases) == study.spec.disease.lesion_count == 9
    rows, cols = study.scan.shape
    assert all(0 <= l["row"] < rows and 0 <= l["col"] < cols for l in study.truth["lesions"])


def test_manifest_row_has_every_column_and_validates():
    studies = simulate_patient(SMALL, 1, 0) + simulate_patient(SMALL, 1, 1)
    rows = [manifest_row(s, f"dicom/{s.truth['study_id']}.dcm") for s in studies]
    frame = pd.DataFrame(rows)
    assert set(COLUMNS) <= set(frame.columns)
    validate_manifest(frame)
    assert (frame["phantom_version"] == PHANTOM_VERSION).all()
    assert (frame["synthetic"] == 0).all() and (frame["source"] == "real").all()
    assert (frame["total_counts"] == [int(s.scan.total_counts) for s in studies]).all()
    assert frame["patient_id"].nunique() == 2


def test_dicom_identity_is_realistic_fake_and_seeded():
    study = simulate_patient(SMALL, 1, 3)[0]
    meta = dicom_meta(study)
    assert set(meta) <= META_KEYS
    assert "^" in meta["patient_name"] and meta["patient_id"].startswith(SMALL.institution.mrn_prefix)
    assert len(meta["patient_birth_date"]) == 8 and meta["study_date"] > meta["patient_birth_date"]
    assert meta["study_instance_uid"] != meta["series_instance_uid"] != meta["sop_instance_uid"]
    assert meta == dicom_meta(simulate_patient(SMALL, 1, 3)[0])
    assert meta["patient_id"] != dicom_meta(simulate_patient(SMALL, 1, 4)[0])["patient_id"]
    assert meta["posterior_mirrored"] is SMALL.posterior_mirrored
