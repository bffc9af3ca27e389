"""``synthscan phantom`` end to end: archive layout, round trip through DICOM, seeding, idempotence, bad input."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from factories import dciodvfy_errors
from synthscan.cli import main
from synthscan.io.dicom import read_scan
from synthscan.io.manifest import COLUMNS, read_manifest, scan_path
from synthscan.phantom.cohort import simulate_patient
from synthscan.phantom.sites import SITES


def _run(*args) -> int:
    return main(["phantom", *map(str, args), "--quiet"])


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "elm"
    assert _run("--site", "elm-mdp", "--n-patients", 6, "--out", out, "--seed", 7) == 0
    return out


def test_archive_layout_and_manifest(archive):
    assert {"manifest.csv", "ground_truth.json", "lesions.json", "phantom_request.json"} <= {
        p.name for p in archive.iterdir()}
    frame = read_manifest(archive / "manifest.csv")
    assert set(COLUMNS) <= set(frame.columns) and "phantom_version" in frame.columns
    assert len(frame) >= 6 and frame["patient_id"].nunique() == 6 and (frame["site"] == "elm-mdp").all()
    assert all(str(p).startswith("dicom/") for p in frame["path"])
    truth = json.loads((archive / "ground_truth.json").read_text())
    lesions = json.loads((archive / "lesions.json").read_text())
    assert set(truth) == set(frame["study_id"]) == set(lesions)
    for _, row in frame.iterrows():
        assert len(lesions[row["study_id"]]) == row["lesion_count"]
        assert truth[row["study_id"]]["heart"]["grade"] == row["amyloid_grade"]


def test_dicom_round_trip_gives_the_simulated_scan(archive):
    frame = read_manifest(archive / "manifest.csv")
    studies = {s.truth["study_id"]: s for i in range(2) for s in simulate_patient(SITES["elm-mdp"], 7, i)}
    for index, row in frame.iterrows():
        if row["study_id"] not in studies:
            continue
        scan = read_scan(scan_path(frame, index))
        assert np.array_equal(scan.counts, studies[row["study_id"]].scan.counts)
        assert scan.pixel_spacing_mm == (4.5, 4.5) and row["total_counts"] == scan.total_counts
        ds = pydicom.dcmread(scan_path(frame, index))
        assert ds.Modality == "NM" and str(ds.PatientName) and ds.PatientID != row["patient_id"]
        assert ds.InstitutionName == SITES["elm-mdp"].institution.name


def test_mirrored_posterior_site_is_marked_and_read_back_canonically(tmp_path):
    out = tmp_path / "delta"
    assert _run("--site", "delta-dpd", "--n-patients", 1, "--out", out, "--seed", 1) == 0
    frame = read_manifest(out / "manifest.csv")
    path = scan_path(frame, frame.index[0])
    simulated = simulate_patient(SITES["delta-dpd"], 1, 0)[0].scan
    stored = pydicom.dcmread(path).pixel_array
    assert np.array_equal(stored[1], simulated.view("posterior"))  # stored already mirrored (site convention)
    assert int(frame["posterior_mirrored"].iloc[0]) == 1
    assert np.array_equal(read_scan(path).counts, simulated.counts)


def test_same_seed_same_bytes_whatever_the_cohort_size_or_workers(tmp_path, archive):
    again = tmp_path / "again"
    assert _run("--site", "elm-mdp", "--n-patients", 6, "--out", again, "--seed", 7, "--workers", 2) == 0
    assert _files(again) == _files(archive)
    smaller = tmp_path / "smaller"
    assert _run("--site", "elm-mdp", "--n-patients", 2, "--out", smaller, "--seed", 7) == 0
    small_dicom = {k: v for k, v in _files(smaller).items() if k.startswith("dicom/")}
    assert small_dicom and all(_files(archive)[k] == v for k, v in small_dicom.items())
    other = tmp_path / "other"
    assert _run("--site", "elm-mdp", "--n-patients", 2, "--out", other, "--seed", 8) == 0
    assert _files(other)["manifest.csv"] != _files(smaller)["manifest.csv"]


def test_rerun_of_a_complete_run_is_a_no_op_and_other_content_is_refused(archive, tmp_path, capsys):
    before = _files(archive)
    assert _run("--site", "elm-mdp", "--n-patients", 6, "--out", archive, "--seed", 7) == 0
    assert "already holds this run" in capsys.readouterr().out and _files(archive) == before
    assert _run("--site", "elm-mdp", "--n-patients", 5, "--out", archive, "--seed", 7) == 2
    assert "another request" in capsys.readouterr().err and _files(archive) == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert _run("--site", "elm-mdp", "--n-patients", 1, "--out", tmp_path / "busy", "--seed", 7) == 2
    assert "other files" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert _run("--site", "elm-mdp", "--n-patients", 1, "--out", tmp_path / "empty", "--seed", 7) == 0
    assert (tmp_path / "empty" / "manifest.csv").is_file()


def test_bad_input_exits_2_without_output(tmp_path, capsys):
    assert _run("--site", "vienna", "--n-patients", 2, "--out", tmp_path / "x") == 2
    error = capsys.readouterr().err
    assert "unknown site 'vienna'" in error and "aurora-dpd" in error and not (tmp_path / "x").exists()
    assert _run("--site", "elm-mdp", "--n-patients", 0, "--out", tmp_path / "x") == 2
    assert _run("--site", "elm-mdp", "--out", tmp_path / "x") == 2
    assert "--n-patients" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folders left behind


def test_list_sites(capsys):
    assert main(["phantom", "--list-sites"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(SITES) and all(any(line.startswith(name) for line in lines) for name in SITES)


def test_written_files_pass_dciodvfy(archive, dciodvfy):
    path = next((archive / "dicom").iterdir())
    assert dciodvfy_errors(path) == []
