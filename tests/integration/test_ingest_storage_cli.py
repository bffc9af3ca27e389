"""``synthscan ingest`` and ``show`` on archives stored as hospitals store them (issue 8): side by side,
views paired by a user's file, compressed, a real Secondary Capture (NEMA NM1), burned-in text, and the
bad input of mixed and undecodable archives (exit 2, the file named, nothing written)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from factories import dciodvfy_errors
from synthscan.cli import main
from synthscan.io.dicom import read_scan, write_scan
from synthscan.io.manifest import read_manifest, scan_path
from synthscan.scan import Scan

NM1_COUNTS = 3_596_452  # PHANTOM.md


def meta(n: int, **extra) -> dict:
    return {"patient_name": f"Doe^Jane{n}", "patient_id": f"MRN{n:04d}", "patient_birth_date": "19500101",
            "study_instance_uid": f"1.3.6.1.4.1.99999.8.{n}", "study_date": "20230314", "study_time": "100000",
            "accession_number": f"ACC{n}", "tracer": "MDP", **extra}


def ingest(*args) -> int:
    return main(["ingest", *map(str, args)])


def stored(out, row=0) -> tuple:
    frame = read_manifest(out / "manifest.csv")
    return frame, read_scan(scan_path(frame, row), views=tuple(frame.loc[row, "views"].split("+")))


def assert_nothing_written(tmp_path, out):
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def side_by_side_file(folder, name, scan, gap=4):
    """Both views in one image: anterior left, posterior right as its detector sees it, empty columns between."""
    image = np.concatenate([scan.view("anterior"), np.zeros((scan.shape[0], gap), np.float32),
                            scan.view("posterior")[:, ::-1]], axis=1)
    path = write_scan(folder / name, Scan(image[None], scan.pixel_spacing_mm, ("anterior",)), meta(1))
    ds = pydicom.dcmread(path)
    del ds.DetectorInformationSequence
    ds.SeriesDescription = "WHOLE BODY"
    ds.save_as(path)
    return path


@pytest.mark.parametrize("split", [None, 18])
def test_side_by_side_archive(tmp_path, scan_factory, split):
    scan = scan_factory()
    (tmp_path / "src").mkdir()
    side_by_side_file(tmp_path / "src", "wb.dcm", scan)
    out = tmp_path / "out"
    extra = [] if split is None else ["--split-column", split]
    assert ingest(tmp_path / "src", "--out", out, "--side-by-side", *extra) == 0
    frame, back = stored(out)
    assert frame.loc[0, "views"] == "anterior+posterior" and frame.loc[0, "total_counts"] == scan.total_counts
    np.testing.assert_array_equal(back.view("anterior")[:, :16], scan.view("anterior"))  # split at column 18:
    np.testing.assert_array_equal(back.view("posterior")[:, :16], scan.view("posterior"))  # 2 zero columns pad
    picture = tmp_path / "show.png"
    assert main(["show", str(tmp_path / "src" / "wb.dcm"), "--side-by-side", "--out", str(picture)]) == 0
    assert picture.is_file()


def test_side_by_side_without_a_split_stops(tmp_path, scan_factory, capsys):
    (tmp_path / "src").mkdir()
    side_by_side_file(tmp_path / "src", "flat.dcm", scan_factory(), gap=0)
    out = tmp_path / "out"
    assert ingest(tmp_path / "src", "--out", out, "--side-by-side") == 2
    err = capsys.readouterr().err
    assert "flat.dcm: cannot find the split between side-by-side views" in err
    assert_nothing_written(tmp_path, out)
    assert main(["show", str(tmp_path / "src"), "--split-column", "9", "--out", str(tmp_path / "x.png")]) == 2
    assert "--split-column needs --side-by-side" in capsys.readouterr().err


def _unlabelled_view(folder, name, image, uid):
    """One view in its own study (a PACS that exported each view as a study), view recorded nowhere."""
    path = write_scan(folder / name, Scan(image[None], 2.4, ("anterior",)), meta(2, study_instance_uid=uid))
    ds = pydicom.dcmread(path)
    del ds.DetectorInformationSequence
    ds.SeriesDescription = "WB 1"
    ds.save_as(path)
    return path


@pytest.fixture
def unpaired(tmp_path, scan_factory):
    source = tmp_path / "src"
    (source / "x").mkdir(parents=True)
    scan = scan_factory()
    _unlabelled_view(source / "x", "a.dcm", scan.view("anterior"), "1.3.6.1.4.1.99999.8.20")
    _unlabelled_view(source / "x", "b.dcm", scan.view("posterior")[:, ::-1], "1.3.6.1.4.1.99999.8.21")
    write_scan(source / "two_view.dcm", scan_factory(), meta(3))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file,study_key,view\nx/b.dcm,case-1,posterior\nx/a.dcm,case-1,anterior\n")
    return source, pairs, scan


def test_pairing_file_pairs_one_file_per_view_studies(unpaired, tmp_path, capsys):
    source, pairs, scan = unpaired
    assert ingest(source, "--out", tmp_path / "no", "--views", "anterior+posterior") == 2
    assert "a.dcm: cannot tell anterior from posterior" in capsys.readouterr().err
    labels = tmp_path / "labels.csv"  # the paired study is the anterior file's StudyInstanceUID
    labels.write_text("study_instance_uid,metastasis\n1.3.6.1.4.1.99999.8.20,1\n1.3.6.1.4.1.99999.8.3,0\n")
    out = tmp_path / "out"
    assert ingest(source, "--out", out, "--pairing", pairs, "--labels", labels) == 0
    frame = read_manifest(out / "manifest.csv")
    assert len(frame) == 2
    row = frame.index[frame["metastasis"] == 1][0]
    np.testing.assert_array_equal(read_scan(scan_path(frame, row)).counts, scan.counts)
    assert "case-1" not in "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("rows, problem", [
    ("x/a.dcm,case-1,anterior\n", "a.dcm: the pairing file gives this study no posterior file"),
    ("x/a.dcm,case-1,anterior\nx/b.dcm,case-1,anterior\n", "pairs.csv: rows 2 and 3 give study_key 'case-1' two"),
])
def test_pairing_that_does_not_fit_stops(unpaired, tmp_path, capsys, rows, problem):
    source, pairs, _ = unpaired
    pairs.write_text("file,study_key,view\n" + rows)
    if "b.dcm" not in rows:
        (source / "x" / "b.dcm").unlink()  # the posterior file never came with the export
    out = tmp_path / "out"
    assert ingest(source, "--out", out, "--pairing", pairs) == 2
    err = capsys.readouterr().err
    assert problem in err, err
    assert_nothing_written(tmp_path, out)


def test_pairing_must_list_every_file_of_a_study(unpaired, tmp_path, capsys):
    source, pairs, scan = unpaired
    _unlabelled_view(source / "x", "c.dcm", scan.view("anterior"), "1.3.6.1.4.1.99999.8.21")  # b's study
    assert ingest(source, "--out", tmp_path / "out", "--pairing", pairs) == 2
    assert "c.dcm is not in the pairing file but belongs to the same StudyInstanceUID" in capsys.readouterr().err


@pytest.fixture
def nm1_archive(tmp_path, scan_factory):
    """The real NEMA NM1 scan (one anterior view, SC, JPEG lossless) next to two two-view studies."""
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(get_testdata_file("JPEG-LL.dcm"), source / "NM1.dcm")
    for n in (4, 5):
        write_scan(source / f"study{n}.dcm", scan_factory(), meta(n))
    return source


def test_archive_mixing_one_and_two_view_studies(nm1_archive, tmp_path, capsys):
    out = tmp_path / "out"
    assert ingest(nm1_archive, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NM1.dcm" in err[0] and "single-view mode (--views anterior" in err[0], err
    assert_nothing_written(tmp_path, out)
    assert ingest(nm1_archive, "--out", out, "--views", "anterior") == 0
    frame = read_manifest(out / "manifest.csv")
    assert (frame["views"] == "anterior").all() and len(frame) == 3
    totals = [read_scan(scan_path(frame, row), views=("anterior",)).total_counts for row in frame.index]
    assert NM1_COUNTS in totals  # the canonical copy holds exactly the real scan's counts
    picture = tmp_path / "nm1.png"
    assert main(["show", str(nm1_archive / "NM1.dcm"), "--views", "anterior", "--out", str(picture)]) == 0
    assert main(["show", str(out / "manifest.csv"), "--views", "anterior", "--out", str(picture)]) == 0
    assert main(["show", str(out / "manifest.csv"), "--side-by-side", "--out", str(picture)]) == 2
    assert "--side-by-side is for DICOM files" in capsys.readouterr().err


def test_compressed_archive_becomes_the_canonical_store(tmp_path, scan_factory):
    source = tmp_path / "src"
    source.mkdir()
    scans = {}
    for n, syntax in ((6, RLELossless), (7, JPEG2000Lossless)):
        scans[n] = scan_factory(cols=32)
        path = write_scan(source / f"s{n}.dcm", scans[n], meta(n))
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(path)
    out = tmp_path / "out"
    assert ingest(source, "--out", out) == 0
    frame = read_manifest(out / "manifest.csv")
    for row in frame.index:
        assert pydicom.dcmread(scan_path(frame, row)).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        back = read_scan(scan_path(frame, row))
        assert any(np.array_equal(back.counts, scan.counts) for scan in scans.values())


def test_undecodable_transfer_syntax_stops(tmp_path, scan_factory, capsys):
    source = tmp_path / "src"
    source.mkdir()
    write_scan(source / "good.dcm", scan_factory(), meta(8))
    ds = pydicom.dcmread(write_scan(source / "private.dcm", scan_factory(), meta(9)))
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.9.9999.1"
    ds.save_as(source / "private.dcm")
    out = tmp_path / "out"
    assert ingest(source, "--out", out) == 2
    err = capsys.readouterr().err
    for part in ("private.dcm", "SOP class 1.2.840.10008.5.1.4.1.1.20", "modality NM", "2 frame(s)",
                 "transfer syntax 1.2.826.0.1.3680043.9.9999.1"):
        assert part in err, err
    assert_nothing_written(tmp_path, out)


def test_burned_in_text_is_refused_or_masked(tmp_path, scan_factory, capsys):
    source = tmp_path / "src"
    source.mkdir()
    scan = scan_factory(views=("anterior",))
    text = scan.counts.copy()
    text[0, :6, 4:12] = 999  # "burned-in" letters in the top rows
    path = write_scan(source / "sc.dcm", Scan(text, scan.pixel_spacing_mm, scan.views), meta(10))
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(path)
    out = tmp_path / "out"
    assert ingest(source, "--out", out, "--views", "anterior") == 2
    assert "sc.dcm: BurnedInAnnotation is YES" in capsys.readouterr().err
    assert_nothing_written(tmp_path, out)
    assert ingest(source, "--out", out, "--views", "anterior", "--mask-burned-in", "0:99,:") == 2
    assert "sc.dcm: mask region rows 0:99, columns 0:16 does not fit the 64x16 image" in capsys.readouterr().err
    assert ingest(source, "--out", out, "--views", "anterior", "--mask-burned-in", "0:6,:") == 0
    frame, back = stored(out)
    assert back.counts[0, :6].sum() == 0
    np.testing.assert_array_equal(back.counts[0, 6:], scan.counts[0, 6:])
    assert frame.loc[0, "burned_in_mask"] == "0:6,:"
    assert int(frame.loc[0, "masked_counts"]) == text[0, :6].sum()
    written = pydicom.dcmread(scan_path(frame, 0))
    assert written.BurnedInAnnotation == "NO"
    assert "113101" in [item.CodeValue for item in written.DeidentificationMethodCodeSequence]
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(scan_path(frame, 0)) == []
    assert ingest(source, "--out", tmp_path / "allowed", "--views", "anterior", "--allow-burned-in") == 0
    assert pydicom.dcmread(next((tmp_path / "allowed" / "dicom").rglob("*.dcm"))).BurnedInAnnotation == "YES"
