"""Unit tests of synthscan.io.deid: keyed UIDs and pseudonyms, date shifts, options, burned-in text, key files."""

from __future__ import annotations

import datetime
import re
import stat

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

from synthscan.errors import BadInputError
from synthscan.io import deid
from synthscan.io.dicom import META_KEYS, read_scan, write_scan

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def nm_file(tmp_path, scan_factory):
    scan = scan_factory()
    path = tmp_path / "in.dcm"
    write_scan(path, scan, {
        "patient_name": "Kowalski^Anna", "patient_id": "MRN7731", "patient_birth_date": "19480312",
        "patient_sex": "F", "study_instance_uid": "1.3.6.1.4.1.99999.1.1", "study_date": "20230314",
        "study_time": "093012", "uptake_minutes": 185, "accession_number": "ACC7731", "tracer": "HMDP",
        "activity_mbq": 650, "institution_name": "St Mary Hospital", "collimator": "LEHR",
        "manufacturer": "GE Healthcare", "manufacturer_model": "Discovery NM/CT 670",
        "series_description": "WB ANT/POST Kowalski"})
    return path, scan


def test_uids_are_keyed_consistent_and_valid():
    one, two = deid.Deidentifier(KEY), deid.Deidentifier(KEY)
    uid = "1.3.6.1.4.1.99999.1.2.3"
    assert one.uid(uid) == two.uid(uid) != deid.Deidentifier(OTHER_KEY).uid(uid)
    assert one.uid(uid) != one.uid(uid + "4")
    assert re.fullmatch(r"2\.25\.\d+", one.uid(uid)) and len(one.uid(uid)) <= 64 and UID(one.uid(uid)).is_valid
    assert one.uid("1.2.840.10008.5.1.4.1.1.20") == "1.2.840.10008.5.1.4.1.1.20"  # a registered SOP class


def test_pseudonyms_are_keyed_and_never_contain_the_original():
    one = deid.Deidentifier(KEY)
    assert one.patient_pseudonym("id::MRN7731") == deid.Deidentifier(KEY).patient_pseudonym("id::MRN7731")
    assert one.patient_pseudonym("id::MRN7731") != deid.Deidentifier(OTHER_KEY).patient_pseudonym("id::MRN7731")
    assert re.fullmatch(r"p-[0-9a-f]{16}", one.patient_pseudonym("id::MRN7731"))
    for original in [f"{i:x}" for i in range(256)] + ["7", "42", "abc", "2023"]:  # short ids that hex could hold
        assert original not in one.patient_pseudonym(f"id::{original}")[2:]
        assert original not in one.study_pseudonym(original)[2:]


def test_dates_shift_per_patient_and_keep_intervals():
    one = deid.Deidentifier(KEY)
    first, second = one.shift_date("20230314", "id::A"), one.shift_date("20230501", "id::A")
    as_date = lambda text: datetime.datetime.strptime(text, "%Y%m%d").date()  # noqa: E731
    assert (as_date(second) - as_date(first)).days == 48
    assert 365 <= (datetime.date(2023, 3, 14) - as_date(first)).days < 3650
    shifts = {one.shift_days(f"id::{i}") for i in range(20)}
    assert len(shifts) > 15  # patients get different shifts
    assert one.shift_date("", "id::A") == "" and one.shift_date("not a date", "id::A") == ""


def test_age_capped_and_derived():
    ds = Dataset()
    ds.PatientAge = "095Y"
    assert deid.age_years(ds) == 90
    ds.PatientAge = "067Y"
    assert deid.age_years(ds) == 67
    ds.PatientAge = "018M"
    assert deid.age_years(ds) == 1
    ds = Dataset()
    ds.PatientBirthDate, ds.StudyDate = "19480312", "20230311"
    assert deid.age_years(ds) == 74
    assert deid.age_years(Dataset()) is None


def test_descriptors_keep_only_vocabulary_words():
    assert deid.clean_descriptor("WB ANT/POST Kowalski^Anna 7731") == "WB ANT POST"
    assert deid.clean_descriptor("Tc-99m HDP, Dr. Moreau") == "TC 99M HDP"


def test_dataset_deidentification(nm_file):
    path, scan = nm_file
    original = pydicom.dcmread(path)
    before = original.to_json()
    clean = deid.deidentify_dataset(original, KEY)
    assert original.to_json() == before  # the input is not changed
    assert clean.PatientName == clean.PatientID and clean.PatientID.startswith("p-")
    assert clean.PatientIdentityRemoved == "YES" and clean.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [item.CodeValue for item in clean.DeidentificationMethodCodeSequence]
    assert codes[0] == "113100" and {"113107", "113108"} <= set(codes)
    assert clean.StudyDate != original.StudyDate and clean.StudyTime == "" and clean.PatientBirthDate == ""
    assert clean.AccessionNumber == "" and "InstitutionName" not in clean
    assert clean.SeriesDescription == "WB ANT POST" and clean.PatientSex == "F" and clean.PatientAge == "075Y"
    assert clean.StudyInstanceUID == deid.Deidentifier(KEY).uid(original.StudyInstanceUID)
    out = path.parent / "clean.dcm"
    clean.save_as(out, enforce_file_format=True)
    assert np.array_equal(read_scan(out).counts, scan.counts)  # views still identified, counts exact


def test_deidentified_nm_object_passes_dciodvfy(nm_file, dciodvfy):
    from factories import dciodvfy_errors

    path, _ = nm_file
    out = path.parent / "clean.dcm"
    deid.deidentify_dataset(pydicom.dcmread(path), KEY).save_as(out, enforce_file_format=True)
    assert dciodvfy_errors(out) == []


def test_burned_in_annotation_refused_unless_allowed(nm_file):
    path, _ = nm_file
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(BadInputError, match=r"in\.dcm: BurnedInAnnotation is YES"):
        deid.deidentify_dataset(ds, KEY, path=path)
    assert deid.deidentify_dataset(ds, KEY, allow_burned_in=True).BurnedInAnnotation == "YES"


def test_carried_meta_is_write_scan_meta_without_identifiers(nm_file):
    path, _ = nm_file
    ds = pydicom.dcmread(path)
    meta = deid.carried_meta(ds, deid.Deidentifier(KEY))
    assert set(meta) <= META_KEYS
    assert meta["tracer"] == "HMDP" and meta["activity_mbq"] == 650 and meta["collimator"] == "LEHR"
    assert meta["uptake_minutes"] == 185 and meta["patient_age_years"] == 75 and meta["patient_sex"] == "F"
    assert meta["study_date"] != "20230314" and meta["study_instance_uid"].startswith("2.25.")
    text = repr(meta)
    for identifier in ("Kowalski", "MRN7731", "ACC7731", "St Mary", "19480312", "093012", "1.3.6.1.4.1.99999"):
        assert identifier not in text


def test_tracer_from_code_or_words():
    ds = Dataset()
    info = Dataset()
    info.Radiopharmaceutical = "Tc-99m DPD (Teceos)"
    ds.RadiopharmaceuticalInformationSequence = [info]
    assert deid.tracer_of(ds) == "DPD"
    code = Dataset()
    code.CodeValue = "C-B1038"
    info.RadiopharmaceuticalCodeSequence = [code]
    assert deid.tracer_of(ds) == "MDP"  # the code wins over free text
    assert deid.tracer_of(Dataset()) is None


def test_key_file_created_private_and_reloaded(tmp_path):
    path = tmp_path / "keys" / "project.key"
    key = deid.load_or_create_key(path)
    assert len(key) == deid.KEY_BYTES and deid.load_or_create_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.hex() not in deid.key_fingerprint(key) and len(deid.key_fingerprint(key)) == 16
    (tmp_path / "bad.key").write_text("not hex\n")
    with pytest.raises(BadInputError, match="bad.key: not a project key file"):
        deid.load_or_create_key(tmp_path / "bad.key")
