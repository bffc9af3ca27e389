"""Archive storage: compressed transfer syntaxes, unknown syntaxes, burned-in masks, the pairing file."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, RLELossless

from synthscan.errors import BadInputError
from synthscan.io.archive import StorageOptions, format_mask, parse_region, read_pairing, read_study
from synthscan.io.dicom import dataset_frames, mask_frames, read_scan, write_scan
from synthscan.scan import Scan


@pytest.mark.parametrize("name", ["emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm",
                                  "emri_small_jpeg_ls_lossless.dcm"])
def test_compressed_syntaxes_decode_exactly(name):
    """pydicom-data's 10-frame MR in RLE, JPEG 2000 and JPEG-LS: the same pixels as the uncompressed file."""
    reference = dataset_frames(pydicom.dcmread(get_testdata_file("emri_small.dcm")))
    frames = dataset_frames(pydicom.dcmread(get_testdata_file(name)))
    assert frames.shape == reference.shape == (10, 64, 64)
    np.testing.assert_array_equal(frames, reference)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000"])
def test_compressed_nm_study_reads_back_exactly(tmp_path, scan_factory, syntax):
    scan = scan_factory(cols=32)  # OpenJPEG needs at least 32 columns at its default resolution levels
    ds = pydicom.dcmread(write_scan(tmp_path / "plain.dcm", scan))
    ds.compress(syntax)
    ds.save_as(tmp_path / "packed.dcm")
    assert pydicom.dcmread(tmp_path / "packed.dcm").file_meta.TransferSyntaxUID == syntax
    back = read_scan(tmp_path / "packed.dcm")
    assert back.views == scan.views
    np.testing.assert_array_equal(back.counts, scan.counts)


def test_unknown_transfer_syntax_names_what_was_found(tmp_path, scan_factory):
    ds = pydicom.dcmread(write_scan(tmp_path / "a.dcm", scan_factory()))
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.9.9999.1"  # a private syntax no decoder knows
    ds.save_as(tmp_path / "private.dcm")
    with pytest.raises(BadInputError) as caught:
        read_scan(tmp_path / "private.dcm")
    message = str(caught.value)
    for part in ("private.dcm", "cannot be decoded", "SOP class 1.2.840.10008.5.1.4.1.1.20", "modality NM",
                 "2 frame(s)", "transfer syntax 1.2.826.0.1.3680043.9.9999.1"):
        assert part in message, message


@pytest.mark.parametrize("text, region", [("0:40,0:256", (0, 40, 0, 256)), ("0:40,:", (0, 40, None, None)),
                                          (" 10 : , :8 ", (10, None, None, 8))])
def test_mask_regions_parse(text, region):
    assert parse_region(text) == region
    assert parse_region(format_mask([region])) == region


@pytest.mark.parametrize("text", ["0-40,0:256", "40:0,:", "0:40", "a:b,c:d"])
def test_bad_mask_regions_are_refused(text):
    with pytest.raises(BadInputError, match="mask"):
        parse_region(text)


def test_mask_zeroes_stored_pixels_and_counts_them(tmp_path, scan_factory):
    frames = np.arange(2 * 6 * 4, dtype=np.float32).reshape(2, 6, 4)
    masked, removed = mask_frames(frames, [(0, 2, None, None), (1, 3, 0, 1)])
    assert removed == frames[:, :2].sum() + frames[:, 2, 0].sum()  # overlap counted once
    assert masked[:, :2].sum() == 0 and masked[:, 2, 0].sum() == 0
    np.testing.assert_array_equal(masked[:, 3:], frames[:, 3:])
    with pytest.raises(BadInputError, match="does not fit the 6x4 image"):
        mask_frames(frames, [(0, 2, 0, 5)], "x.dcm")
    # The mask is in stored coordinates: the posterior frame is masked before it is mirrored to the front.
    scan = scan_factory()
    path = write_scan(tmp_path / "s.dcm", scan)
    back = read_scan(path, mask=[(0, 4, 0, 2)])
    assert back.meta["masked_counts"] == scan.view("anterior")[:4, :2].sum() + scan.view("posterior")[:4, -2:].sum()
    assert back.view("posterior")[:4, -2:].sum() == 0 and back.view("anterior")[:4, :2].sum() == 0


def _one_view_file(folder, name, image, view_recorded=None, uid="1.2.3.4"):
    path = write_scan(folder / name, Scan(image[None], 2.4, (view_recorded or "anterior",)),
                      {"study_instance_uid": uid, "patient_id": "P1"})
    if view_recorded is None:  # a camera that records no view at all
        ds = pydicom.dcmread(path)
        del ds.DetectorInformationSequence
        ds.SeriesDescription = "WB"
        ds.save_as(path)
    return path


def test_pairing_file_pairs_views_the_attributes_do_not(tmp_path, scan_factory):
    scan = scan_factory()
    anterior = _one_view_file(tmp_path, "img1.dcm", scan.view("anterior"), uid="1.2.3.1")
    posterior = _one_view_file(tmp_path, "img2.dcm", scan.view("posterior")[:, ::-1], uid="1.2.3.2")
    (tmp_path / "pairs.csv").write_text("file,study_key,view\nimg2.dcm,k1,posterior\nimg1.dcm,k1,anterior\n")
    pairing = read_pairing(tmp_path / "pairs.csv", tmp_path)
    assert pairing == {anterior.resolve(): ("k1", "anterior"), posterior.resolve(): ("k1", "posterior")}
    file_views = {anterior: "anterior", posterior: "posterior"}
    back = read_study([posterior, anterior], StorageOptions(), file_views)
    np.testing.assert_array_equal(back.counts, scan.counts)  # posterior mirrored to the front
    only = read_study([posterior, anterior], StorageOptions(views=("posterior",)), file_views)
    np.testing.assert_array_equal(only.counts[0], scan.view("posterior"))
    recorded = _one_view_file(tmp_path, "img3.dcm", scan.view("anterior"), view_recorded="anterior")
    with pytest.raises(BadInputError, match="img3.dcm: the pairing file calls it posterior, but the file records"):
        read_study([anterior, recorded], StorageOptions(), {anterior: "anterior", recorded: "posterior"})
    with pytest.raises(BadInputError, match="img1.dcm: the pairing file gives this study no posterior file"):
        read_study([anterior], StorageOptions(), {anterior: "anterior"})


@pytest.mark.parametrize("text, problem", [
    ("file,study\nimg1.dcm,k1\n", "pairing columns must be file, study_key, view"),
    ("file,study_key,view\nimg1.dcm,k1,lateral\n", "row 2, column 'view': 'lateral' is not one of"),
    ("file,study_key,view\nnope.dcm,k1,anterior\n", "row 2: no file 'nope.dcm' under the source folder"),
    ("file,study_key,view\nimg1.dcm,k1,anterior\nimg1.dcm,k2,anterior\n", "row 3: file 'img1.dcm' is listed twice"),
    ("file,study_key,view\nimg1.dcm,k1,anterior\nimg2.dcm,k1,anterior\n",
     "rows 2 and 3 give study_key 'k1' two anterior files"),
    ("file,study_key,view\nimg1.dcm,,anterior\n", "row 2: empty study_key"),
])
def test_bad_pairing_files_are_refused(tmp_path, scan_factory, text, problem):
    for name in ("img1.dcm", "img2.dcm"):
        _one_view_file(tmp_path, name, scan_factory(views=("anterior",)).view("anterior"))
    (tmp_path / "pairs.csv").write_text(text)
    with pytest.raises(BadInputError, match="pairs.csv") as caught:
        read_pairing(tmp_path / "pairs.csv", tmp_path)
    assert problem in str(caught.value)
