import numpy as np
import pydicom
import pytest

from factories import dciodvfy_errors
from synthscan.errors import BadInputError
from synthscan.io.dicom import SYNTHETIC_MARKER, read_scan, write_scan
from synthscan.scan import Scan

IDENTITY = {"patient_name": "Doe^Jane", "patient_id": "MRN-0042", "patient_birth_date": "19500101",
            "patient_sex": "F", "patient_age_years": 74, "study_date": "20240301", "study_time": "101500",
            "tracer": "DPD", "activity_mbq": 700, "uptake_minutes": 180, "collimator": "LEHR",
            "manufacturer": "GE", "manufacturer_model": "Millennium MG", "institution_name": "General Hospital"}


def test_round_trip_is_exact(tmp_path, scan_factory):
    scan = scan_factory()
    path = write_scan(tmp_path / "a.dcm", scan, IDENTITY)
    back = read_scan(path)
    assert back.views == scan.views
    assert back.pixel_spacing_mm == scan.pixel_spacing_mm
    np.testing.assert_array_equal(back.counts, scan.counts)


def test_posterior_is_stored_as_seen_from_behind(tmp_path, scan_factory):
    scan = scan_factory()
    ds = pydicom.dcmread(write_scan(tmp_path / "a.dcm", scan))
    np.testing.assert_array_equal(ds.pixel_array[0], scan.view("anterior"))
    np.testing.assert_array_equal(ds.pixel_array[1], scan.view("posterior")[:, ::-1])


def test_large_clinical_counts_round_trip(tmp_path, rng):
    scan = Scan(rng.poisson(30, (2, 1024, 256)).astype(np.float32) * 100, 2.26)
    np.testing.assert_array_equal(read_scan(write_scan(tmp_path / "big.dcm", scan)).counts, scan.counts)


@pytest.mark.parametrize("meta", [IDENTITY, {"synthetic": {"model": "abcd1234", "seed": 7}}, {"deidentified": True}])
def test_written_files_pass_dciodvfy(tmp_path, scan_factory, dciodvfy, meta):
    path = write_scan(tmp_path / "a.dcm", scan_factory(), meta)
    assert dciodvfy_errors(path) == []


def test_single_view_file_passes_dciodvfy(tmp_path, scan_factory, dciodvfy):
    path = write_scan(tmp_path / "a.dcm", scan_factory(views=("anterior",)))
    assert dciodvfy_errors(path) == []
    assert read_scan(path, views=("anterior",)).views == ("anterior",)


def test_synthetic_marker_lives_in_metadata(tmp_path, scan_factory):
    scan = scan_factory()
    ds = pydicom.dcmread(write_scan(tmp_path / "s.dcm", scan, {"synthetic": {"seed": 3}}))
    assert ds.ImageType[0] == "DERIVED"
    assert SYNTHETIC_MARKER in ds.ImageComments
    assert ds.PatientIdentityRemoved == "YES"
    np.testing.assert_array_equal(read_scan(tmp_path / "s.dcm").counts, scan.counts)


def test_views_come_from_attributes_not_frame_order(tmp_path, scan_factory):
    scan = scan_factory()
    path = write_scan(tmp_path / "a.dcm", scan)
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    ds.PixelData = np.stack([frames[1], frames[0]]).tobytes()  # posterior first ...
    ds.DetectorVector = [2, 1]  # ... and the detector vector says so
    ds.save_as(tmp_path / "b.dcm")
    np.testing.assert_array_equal(read_scan(tmp_path / "b.dcm").counts, scan.counts)


def test_one_file_per_view_with_rescale(tmp_path, scan_factory):
    scan = scan_factory()
    files = []
    for view in scan.views:
        path = write_scan(tmp_path / f"{view}.dcm", Scan(scan.view(view)[None], scan.pixel_spacing_mm, (view,)))
        ds = pydicom.dcmread(path)
        del ds.DetectorInformationSequence  # some cameras only say it in text
        ds.SeriesDescription = "WB ANT" if view == "anterior" else "WB POST"
        stored = ds.pixel_array.astype(np.uint16)
        ds.PixelData = (stored // 1).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = "2", "0"
        ds.save_as(path)
        files.append(path)
    back = read_scan(files[::-1])
    np.testing.assert_array_equal(back.counts, 2 * scan.counts)


def test_posterior_mirrored_archives(tmp_path, scan_factory):
    scan = scan_factory()
    path = write_scan(tmp_path / "m.dcm", scan, {"posterior_mirrored": True})
    np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array[1], scan.view("posterior"))
    np.testing.assert_array_equal(read_scan(path).counts, scan.counts)


def test_bad_files_get_clear_errors(tmp_path, scan_factory):
    good = write_scan(tmp_path / "a.dcm", scan_factory())
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:400])
    with pytest.raises(BadInputError, match="truncated.dcm"):
        read_scan(truncated)
    (tmp_path / "junk.dcm").write_text("hello")
    with pytest.raises(BadInputError, match="not a readable DICOM"):
        read_scan(tmp_path / "junk.dcm")
    ds = pydicom.dcmread(good)
    ds.Modality = "CT"
    ds.save_as(tmp_path / "ct.dcm")
    with pytest.raises(BadInputError, match="modality is 'CT'"):
        read_scan(tmp_path / "ct.dcm")
    one = write_scan(tmp_path / "one.dcm", scan_factory(views=("anterior",)))
    with pytest.raises(BadInputError, match="lacks the posterior view"):
        read_scan(one)
    other = write_scan(tmp_path / "post.dcm", scan_factory(rows=32, views=("posterior",)))
    with pytest.raises(BadInputError, match="different matrices"):
        read_scan([one, other])
    ds = pydicom.dcmread(good)
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-100"
    ds.save_as(tmp_path / "neg.dcm")
    with pytest.raises(BadInputError, match="negative"):
        read_scan(tmp_path / "neg.dcm")


def test_counts_beyond_16_bit_are_refused(tmp_path):
    scan = Scan(np.full((2, 4, 4), 70000.0), 1.0)
    with pytest.raises(BadInputError, match="16-bit"):
        write_scan(tmp_path / "x.dcm", scan)
    assert not (tmp_path / "x.dcm").exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_meta_key_is_an_error(tmp_path, scan_factory):
    with pytest.raises(ValueError, match="patient_nmae"):
        write_scan(tmp_path / "x.dcm", scan_factory(), {"patient_nmae": "typo"})


def test_real_nm1_secondary_capture_reads_in_single_view_mode():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("JPEG-LL.dcm")  # NEMA WG04 NM1: lossless JPEG, SC with Modality NM
    scan = read_scan(path, views=("anterior",))
    assert scan.shape == (1024, 256) and scan.pixel_spacing_mm == (2.26, 2.26)
    assert scan.total_counts == 3_596_452  # PHANTOM.md
    with pytest.raises(BadInputError, match="cannot tell anterior from posterior"):
        read_scan(path)


def test_side_by_side_storage_is_split(tmp_path, scan_factory):
    scan = scan_factory()
    anterior, posterior_native = scan.view("anterior"), scan.view("posterior")[:, ::-1]
    gap = np.zeros((scan.shape[0], 4), np.float32)
    combined = Scan(np.concatenate([anterior, gap, posterior_native], axis=1)[None], scan.pixel_spacing_mm,
                    ("anterior",))
    path = write_scan(tmp_path / "sbs.dcm", combined)
    ds = pydicom.dcmread(path)
    del ds.DetectorInformationSequence
    ds.save_as(path)
    back = read_scan(path, side_by_side=True)
    assert back.shape == (scan.shape[0], scan.shape[1] + 2)
    np.testing.assert_array_equal(back.view("anterior")[:, : scan.shape[1]], anterior)
    np.testing.assert_array_equal(back.view("posterior")[:, : scan.shape[1]], scan.view("posterior"))
    assert back.total_counts == scan.total_counts
    given = read_scan(path, side_by_side=True, split_column=scan.shape[1] + 2)
    np.testing.assert_array_equal(given.counts, back.counts)


def test_side_by_side_without_a_gap_is_refused(tmp_path, rng):
    flat = Scan(rng.poisson(5, (1, 64, 32)).astype(np.float32), 2.4, ("anterior",))
    path = write_scan(tmp_path / "flat.dcm", flat)
    with pytest.raises(BadInputError, match="cannot find the split"):
        read_scan(path, side_by_side=True)


def test_deidentification_options_are_declared(tmp_path, scan_factory, dciodvfy):
    how = {"method": ["synthscan basic profile", "dates shifted"], "dates_modified": True,
           "codes": [("113100", "Basic Application Confidentiality Profile"),
                     ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")]}
    path = write_scan(tmp_path / "d.dcm", scan_factory(), {"deidentified": how})
    ds = pydicom.dcmread(path)
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert dciodvfy_errors(path) == []
