"""``synthscan ingest`` end to end on tiny archives (64x16 scans): storage layouts, labels, resume, bad input."""

from __future__ import annotations

import csv
import datetime

import numpy as np
import pydicom
import pytest

from synthscan.cli import main
from synthscan.io import deid
from synthscan.io.dicom import read_scan, write_scan
from synthscan.io.manifest import read_manifest, scan_path
from synthscan.scan import Scan


def identity(n: int, patient: str = "MRN0001", study_date: str = "20230314") -> dict:
    return {"patient_name": f"Patient{patient}^Anna", "patient_id": patient, "patient_sex": "F",
            "patient_birth_date": "19500101", "study_instance_uid": f"1.3.6.1.4.1.99999.5.{n}",
            "study_date": study_date, "study_time": "100000", "uptake_minutes": 180, "accession_number": f"ACC{n}",
            "tracer": "DPD", "activity_mbq": 700, "manufacturer": "Siemens", "manufacturer_model": "Symbia",
            "collimator": "LEHR"}


def multi_frame(folder, name, scan, meta):
    return write_scan(folder / name, scan, meta)


def per_view(folder, stem, scan, meta, shapes=None):
    """One file per view, as many cameras store them (same study, own series and SOP instance UIDs)."""
    paths = []
    for index, view in enumerate(scan.views):
        image = scan.counts[index]
        if shapes:
            image = image[: shapes[index]]
        single = Scan(image[None], scan.pixel_spacing_mm, (view,))
        paths.append(write_scan(folder / f"{stem}_{view[:3]}.dcm", single, meta))
    return paths


@pytest.fixture
def archive(tmp_path, scan_factory):
    """Three studies: two multi-frame (one patient, 48 days apart) and one stored as one file per view."""
    source = tmp_path / "archive"
    (source / "2023" / "a").mkdir(parents=True)
    (source / "2023" / "b").mkdir(parents=True)
    scans = [scan_factory() for _ in range(3)]
    multi_frame(source / "2023" / "a", "s0.dcm", scans[0], identity(0))
    multi_frame(source / "2023" / "a", "s1.dcm", scans[1], identity(1, study_date="20230501"))
    per_view(source / "2023" / "b", "s2", scans[2], identity(2, patient="MRN0002"))
    labels = tmp_path / "labels.csv"
    labels.write_text("study_instance_uid,accession_number,metastasis,amyloid_grade,time_days,event\n"
                      "1.3.6.1.4.1.99999.5.0,,1,0,400,1\n"
                      "1.3.6.1.4.1.99999.5.1,,0,2,380,0\n"
                      ",ACC2,0,0,,\n")  # matched by accession number
    return source, labels, scans


def ingest(*args) -> int:
    return main(["ingest", *map(str, args)])


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ingest_writes_canonical_store_and_manifest(archive, tmp_path, capsys):
    source, labels, scans = archive
    out = tmp_path / "out"
    assert ingest(source, "--labels", labels, "--out", out, "--site", "vienna") == 0
    captured = capsys.readouterr()
    assert "ingested 3 new of 3 studies" in captured.out
    assert f"created the secret project key {out / 'deid.key'}" in captured.err
    frame = read_manifest(out / "manifest.csv")
    assert len(frame) == 3 and frame["study_id"].str.fullmatch(r"s-[0-9a-f]{16}").all()
    assert frame["patient_id"].nunique() == 2 and (frame["site"] == "vienna").all()
    assert (frame["views"] == "anterior+posterior").all() and (frame["tracer"] == "DPD").all()
    assert (frame["rows"] == 64).all() and (frame["pixel_spacing_mm"] == 2.4).all()
    assert (frame["camera"] == "Siemens Symbia LEHR").all() and (frame["uptake_minutes"] == 180).all()
    by_counts = {round(float(r.total_counts)): r for r in frame.itertuples()}
    for index, scan in enumerate(scans):  # counts exact, labels joined to the right study
        row = by_counts[round(scan.total_counts)]
        stored = read_scan(scan_path(frame, frame.index[frame["study_id"] == row.study_id][0]))
        assert np.array_equal(stored.counts, scan.counts)
        assert (row.metastasis, row.amyloid_grade) == [(1, 0), (0, 2), (0, 0)][index]
        written = pydicom.dcmread(out / row.path)
        assert written.PatientID == row.patient_id and written.PatientIdentityRemoved == "YES"
        assert written.StudyInstanceUID != f"1.3.6.1.4.1.99999.5.{index}"
    # One patient's studies: same pseudonym, dates shifted by the same amount (interval of 48 days kept).
    first, second = (pydicom.dcmread(out / by_counts[round(scans[i].total_counts)].path) for i in (0, 1))
    assert first.PatientID == second.PatientID
    days = lambda ds: datetime.datetime.strptime(ds.StudyDate, "%Y%m%d").date()  # noqa: E731
    assert (days(second) - days(first)).days == 48 and first.StudyDate != "20230314"
    assert sorted(p.name for p in out.iterdir()) == ["deid.key", "dicom", "ingest.json", "manifest.csv"]


def test_rerun_is_idempotent_and_adds_new_studies(archive, tmp_path, scan_factory, capsys):
    source, labels, _ = archive
    out = tmp_path / "out"
    assert ingest(source, "--labels", labels, "--out", out) == 0
    before = snapshot(out)
    assert ingest(source, "--labels", labels, "--out", out) == 0
    assert snapshot(out) == before  # nothing rewritten, same manifest
    assert "ingested 0 new of 3 studies" in capsys.readouterr().out
    # A new study in a second batch; a labels file with all four rows and one label changed.
    batch = tmp_path / "batch2"
    batch.mkdir()
    multi_frame(batch, "s3.dcm", scan_factory(), identity(3, patient="MRN0003"))
    labels.write_text(labels.read_text().replace("1.3.6.1.4.1.99999.5.1,,0,2", "1.3.6.1.4.1.99999.5.1,,1,2")
                      + "1.3.6.1.4.1.99999.5.3,,0,1,,\n")
    assert ingest(batch, "--labels", labels, "--out", out) == 0
    assert "ingested 1 new of 4 studies" in capsys.readouterr().out
    after = snapshot(out)
    assert all(after[name] == before[name] for name in before if name.endswith(".dcm"))
    frame = read_manifest(out / "manifest.csv")
    assert len(frame) == 4 and sorted(frame["metastasis"].tolist()) == [0, 0, 1, 1]


def test_rerun_with_another_key_is_refused(archive, tmp_path, capsys):
    source, labels, _ = archive
    out = tmp_path / "out"
    assert ingest(source, "--labels", labels, "--out", out) == 0
    deid.load_or_create_key(tmp_path / "other.key")
    assert ingest(source, "--labels", labels, "--out", out, "--key", tmp_path / "other.key") == 2
    assert "not the one the output folder was made with" in capsys.readouterr().err


def test_key_outside_out_gives_same_pseudonyms_everywhere(archive, tmp_path):
    source, labels, _ = archive
    key = tmp_path / "secret" / "project.key"
    assert ingest(source, "--labels", labels, "--out", tmp_path / "one", "--key", key) == 0
    assert ingest(source, "--labels", labels, "--out", tmp_path / "two", "--key", key) == 0
    assert not (tmp_path / "one" / "deid.key").exists()
    one, two = (read_manifest(tmp_path / name / "manifest.csv") for name in ("one", "two"))
    assert one["study_id"].tolist() == two["study_id"].tolist()
    key_hex = key.read_text().strip().encode()
    assert all(key_hex not in p.read_bytes() for p in (tmp_path / "one").rglob("*") if p.is_file())


def test_single_view_mode(tmp_path, scan_factory):
    source = tmp_path / "archive"
    source.mkdir()
    scan = scan_factory(views=("anterior",))
    multi_frame(source, "ant.dcm", scan, identity(0))
    out = tmp_path / "out"
    assert ingest(source, "--out", out, "--views", "anterior") == 0
    frame = read_manifest(out / "manifest.csv")
    assert frame["views"].tolist() == ["anterior"]
    assert np.array_equal(read_scan(scan_path(frame, 0), views=("anterior",)).counts, scan.counts)


# ---------------------------------------------------------------------------------------------- bad input


def _corrupt(folder, scan_factory):
    (folder / "notes.dcm").write_bytes(b"this is not DICOM at all" * 10)
    return "notes.dcm", "not a readable DICOM file"


def _truncated(folder, scan_factory):
    path = multi_frame(folder, "cut.dcm", scan_factory(), identity(9))
    path.write_bytes(path.read_bytes()[:-1000])
    return "cut.dcm", "pixel data"


def _ct(folder, scan_factory):
    path = multi_frame(folder, "ct.dcm", scan_factory(), identity(9))
    ds = pydicom.dcmread(path)
    ds.Modality = "CT"
    ds.save_as(path)
    return "ct.dcm", "modality is 'CT', expected NM"


def _one_view(folder, scan_factory):
    per_view(folder, "lonely", scan_factory(), identity(9))
    (folder / "lonely_pos.dcm").unlink()
    return "lonely_ant.dcm", "lacks the posterior view"


def _shapes_differ(folder, scan_factory):
    per_view(folder, "odd", scan_factory(), identity(9), shapes=(64, 60))
    return "odd_ant.dcm", "different matrices"


def _negative(folder, scan_factory):
    path = multi_frame(folder, "neg.dcm", scan_factory(), identity(9))
    ds = pydicom.dcmread(path)
    ds.RescaleIntercept, ds.RescaleSlope = "-1000", "1"
    ds.save_as(path)
    return "neg.dcm", "negative counts"


def _not_a_number(folder, scan_factory):
    path = multi_frame(folder, "nan.dcm", scan_factory(), identity(9))
    ds = pydicom.dcmread(path)
    ds.RescaleIntercept, ds.RescaleSlope = "0", "NaN"
    ds.save_as(path)
    return "nan.dcm", "NaN"


def _burned_in(folder, scan_factory):
    path = multi_frame(folder, "burned.dcm", scan_factory(), identity(9))
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(path)
    return "burned.dcm", "BurnedInAnnotation is YES"


BAD_FILES = [_corrupt, _truncated, _ct, _one_view, _shapes_differ, _negative, _not_a_number, _burned_in]


@pytest.mark.parametrize("make_bad", BAD_FILES, ids=lambda f: f.__name__.strip("_"))
def test_bad_file_stops_with_one_message_and_no_output(make_bad, archive, tmp_path, scan_factory, capsys):
    source, labels, _ = archive
    name, problem = make_bad(source / "2023" / "a", scan_factory)
    out = tmp_path / "out"
    assert ingest(source, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0] and problem in err[0], err
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


@pytest.mark.parametrize("make_bad", BAD_FILES, ids=lambda f: f.__name__.strip("_"))
def test_skip_bad_lists_rejects_without_file_names(make_bad, archive, tmp_path, scan_factory, capsys):
    source, labels, _ = archive
    name, problem = make_bad(source / "2023" / "a", scan_factory)
    out = tmp_path / "out"
    assert ingest(source, "--out", out, "--skip-bad") == 0
    err = capsys.readouterr().err
    assert f"skipped {source / '2023' / 'a' / name}" in err  # the operator sees the real path
    assert len(read_manifest(out / "manifest.csv")) == 3
    with open(out / "rejects.csv") as handle:
        rejects = list(csv.DictReader(handle))
    assert rejects and all(r["file"].startswith("f-") for r in rejects)
    assert any(problem in r["reason"] for r in rejects)
    assert name not in (out / "rejects.csv").read_text() and "2023" not in (out / "rejects.csv").read_text()


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert ingest(tmp_path / "empty", "--out", tmp_path / "out") == 2
    assert "empty: no files found" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("row, problem", [
    ("1.3.6.1.4.1.99999.5.77,,1,0,,\n", "row 5: study_instance_uid matches no study"),
    (",ACC77,1,0,,\n", "row 5: accession_number matches no study"),
    ("1.3.6.1.4.1.99999.5.0,,0,0,,\n", "rows 2 and 5 describe the same study"),
    ("1.3.6.1.4.1.99999.5.2,,7,0,,\n", "row 5, column 'metastasis': 7 is not one of [0, 1]"),
])
def test_labels_that_do_not_match(archive, tmp_path, capsys, row, problem):
    source, labels, _ = archive
    labels.write_text(labels.read_text() + row)
    assert ingest(source, "--labels", labels, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "labels.csv" in err and problem in err and "99999.5.77" not in err and "ACC77" not in err
    assert not (tmp_path / "out").exists()


def test_labels_missing_a_study_or_with_unknown_column(archive, tmp_path, capsys):
    source, labels, _ = archive
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[:3]) + "\n")  # no row for the per-view study
    assert ingest(source, "--labels", labels, "--out", tmp_path / "out") == 2
    assert "s2_ant.dcm: study has no row in labels.csv" in capsys.readouterr().err
    labels.write_text(lines[0] + ",patient_name\n" + "\n".join(line + ",Kowalski" for line in lines[1:]) + "\n")
    assert ingest(source, "--labels", labels, "--out", tmp_path / "out") == 2
    assert "unknown column(s) ['patient_name']" in capsys.readouterr().err


def test_out_folder_not_from_ingest_is_refused(archive, tmp_path, capsys):
    source, _, _ = archive
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert ingest(source, "--out", out) == 2
    assert "not made by synthscan ingest" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_out_inside_source_is_not_ingested_again(archive, tmp_path):
    source, labels, _ = archive
    out = source / "deidentified"
    assert ingest(source, "--labels", labels, "--out", out) == 0
    assert ingest(source, "--labels", labels, "--out", out) == 0
    assert len(read_manifest(out / "manifest.csv")) == 3


def test_worker_processes_give_the_same_store(tmp_path, scan_factory, monkeypatch):
    import synthscan.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "PARALLEL_FROM", 2)
    source = tmp_path / "archive"
    source.mkdir()
    for index in range(6):
        (per_view if index % 2 else multi_frame)(source, f"s{index}" + ("" if index % 2 else ".dcm"),
                                                 scan_factory(), identity(index, patient=f"MRN{index}"))
    bad = multi_frame(source, "ct.dcm", scan_factory(), identity(9))
    ds = pydicom.dcmread(bad)
    ds.RescaleIntercept, ds.RescaleSlope = "-5000", "1"
    ds.save_as(bad)
    key = tmp_path / "project.key"
    for workers in (1, 2):
        assert ingest(source, "--out", tmp_path / f"out{workers}", "--key", key, "--workers", workers,
                      "--skip-bad") == 0
    one, two = snapshot(tmp_path / "out1"), snapshot(tmp_path / "out2")
    assert {k: v[0] for k, v in one.items()} == {k: v[0] for k, v in two.items()}
    assert len(read_manifest(tmp_path / "out2" / "manifest.csv")) == 6 and "negative" in one["rejects.csv"][0].decode()
