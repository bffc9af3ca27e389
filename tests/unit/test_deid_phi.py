"""PHI planted in every attribute of PS3.15 Table E.1-1 must not survive ingest or de-identification.

The attribute list comes from the table itself, as shipped by the independent ``dicom-anonymizer`` package
(its ``dicom_anonymization_databases`` modules are generated from PS3.15 Table E.1-1), never from synthscan's
own lists. Every attribute whose VR pydicom knows is planted with realistic, traceable PHI (names, MRNs,
addresses, dates, times, UIDs; sequences with nested items two levels deep); attributes new to the standard
that pydicom does not know yet are planted as LO. Private tags, overlays (60xx), curves (50xx) and free-text
comments are planted too. Then every output byte (all files under OUT, manifest included) and the captured
stdout/stderr are searched for every planted value and for the names and ids inside them.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from synthscan.cli import main
from synthscan.io.deid import deidentify_dataset
from synthscan.io.dicom import read_scan, write_scan
from synthscan.scan import Scan

dicomanonymizer = pytest.importorskip("dicomanonymizer")
from dicomanonymizer import dicom_anonymization_databases  # noqa: E402
from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, initialize_actions  # noqa: E402

CATEGORIES = ("D_TAGS", "Z_TAGS", "X_TAGS", "U_TAGS", "Z_D_TAGS", "X_Z_TAGS", "X_D_TAGS", "X_Z_D_TAGS",
              "X_Z_U_STAR_TAGS")
TABLE_VERSION = sorted(m.name for m in pkgutil.iter_modules(dicom_anonymization_databases.__path__))[-1]
TABLE = importlib.import_module(f"dicomanonymizer.dicom_anonymization_databases.{TABLE_VERSION}")
# Groups an NM image file cannot carry: command (0000), file meta (0002, checked separately), DICOMDIR
# records (0004); the trailing padding item (FFFC,FFFC) cannot be followed by further attributes.
NOT_IN_AN_IMAGE = (0x0000, 0x0002, 0x0004, 0xFFFC)
SURNAMES = ("Kowalski", "Okonkwo", "Lindqvist", "Moreau", "Tanakawa", "Fitzgerald", "Hernandez", "Novotny")
GIVEN = ("Annabelle", "Chidinma", "Gunnar", "Solange", "Haruki", "Siobhan", "Marisol", "Jaroslav")
KEY = bytes(range(32))


def table_tags() -> dict[Tag, str]:
    """Table E.1-1 attributes (single tags) -> the Basic Profile action category."""
    tags = {}
    for category in CATEGORIES:
        for entry in getattr(TABLE, category):
            if len(entry) == 2 and entry[0] not in NOT_IN_AN_IMAGE:
                tags[Tag(entry)] = category
    return tags


class Planter:
    """Traceable PHI values per VR; remembers every byte string that must not survive."""

    def __init__(self):
        self.n = 0
        self.needles: dict[bytes, str] = {}  # needle -> where it was planted

    def _note(self, where: str, *needles: str) -> None:
        for needle in needles:
            if needle:
                self.needles.setdefault(needle.lower().encode("latin-1"), where)

    def value(self, vr: str, where: str):
        self.n += 1
        n = self.n
        surname, given = SURNAMES[n % len(SURNAMES)], GIVEN[n % len(GIVEN)]
        mrn = f"MRN{7_300_000 + n}"
        if vr == "PN":
            value = f"{surname}^{given}^Q^Dr"
            self._note(where, value, surname, given)
        elif vr in ("LO", "UC"):
            value = f"{given} {surname} {mrn}"
            self._note(where, value, surname, given, mrn)
        elif vr == "SH":
            value = mrn
            self._note(where, value)
        elif vr in ("ST", "LT", "UT"):
            value = f"Patient {given} {surname}, {mrn}, 42 Wexford Lane, Vienna; phone +43 1 4040 {n:04d}"
            self._note(where, value, surname, given, mrn, "Wexford", f"4040 {n:04d}")
        elif vr == "CS":
            value = f"{surname.upper()}{n:04d}"[:16]
            self._note(where, value)
        elif vr == "AE":
            value = f"{surname.upper()[:8]}WS{n:04d}"
            self._note(where, value)
        elif vr == "UR":
            value = f"https://ehr.stmary.example/patient/{mrn}"
            self._note(where, value, mrn)
        elif vr == "UI":
            value = f"1.3.6.1.4.1.99999.7.{n}.{20230314093012 + n}"
            self._note(where, value)
        elif vr == "DA":
            value = f"2023{1 + n % 12:02d}{1 + n % 28:02d}"
            self._note(where, value)
        elif vr == "TM":
            value = f"{7 + n % 12:02d}{n % 60:02d}{(7 * n) % 60:02d}.{n:06d}"
            self._note(where, value)
        elif vr == "DT":
            value = f"2023{1 + n % 12:02d}{1 + n % 28:02d}{7 + n % 12:02d}{n % 60:02d}00.{n:06d}+0100"
            self._note(where, value)
        elif vr == "DS":
            value = f"{7300 + n}.{n:04d}7"
            self._note(where, value)
        elif vr == "IS":
            value = str(738_000_000 + n)
            self._note(where, value)
        elif vr == "AS":
            value = f"{80 + n % 9:03d}Y"
            self._note(where, value)
        elif vr in ("US", "SS"):
            value = 7000 + n  # binary: checked on the parsed output, not by bytes
        elif vr in ("OB", "OW", "UN"):
            text = f"{given}^{surname} {mrn}"
            value = (text + " " * (len(text) % 2)).encode()
            self._note(where, text, mrn)
        elif vr == "SQ":
            value = Sequence([self.item(where)])
        else:
            raise AssertionError(f"no PHI generator for VR {vr}")
        return value

    def item(self, where: str, depth: int = 0) -> Dataset:
        """A sequence item with a person, an institution, a UID, a code meaning and (once) a nested item."""
        item = Dataset()
        item.PatientName = self.value("PN", f"{where} > PatientName")
        item.InstitutionName = self.value("LO", f"{where} > InstitutionName")
        item.ReferencedSOPInstanceUID = self.value("UI", f"{where} > ReferencedSOPInstanceUID")
        item.CodeMeaning = self.value("LO", f"{where} > CodeMeaning")
        item.add(DataElement(0x00291010, "LO", self.value("LO", f"{where} > private")))  # private, no creator
        if depth == 0:
            item.ContentSequence = Sequence([self.item(f"{where} > ContentSequence", depth + 1)])
        return item


def _vr(tag: Tag) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "LO"  # newer than pydicom's dictionary: plant as text
    return {"US or SS": "US", "OB or OW": "OB", "US or OW": "US", "US or SS or OW": "US"}.get(vr, vr)


def plant_phi(ds: Dataset, planter: Planter) -> list[Tag]:
    """Put PHI into every Table E.1-1 attribute, private tags, overlays, curves and comments; return the tags."""
    planted = []
    for tag, category in sorted(table_tags().items()):
        vr = _vr(tag)
        if tag == Tag("PatientSex"):
            ds.PatientSex = "F"  # one letter: kept under Retain Patient Characteristics; checked separately
            continue
        if tag == Tag("PatientAge"):
            value = "093Y"  # retained under Retain Patient Characteristics, capped at 90: must not survive as is
            planter._note("PatientAge", value)
        else:
            value = planter.value(vr, f"{category} {tag} {pydicom.datadict.keyword_for_tag(tag) or '?'}")
        ds.add(DataElement(tag, vr, value))
        planted.append(tag)
    block = ds.private_block(0x0009, "ACME HOSPITAL PACS 1.0", create=True)
    block.add_new(0x10, "LO", planter.value("LO", "private (0009,xx10)"))
    block.add_new(0x11, "SQ", Sequence([planter.item("private sequence")]))
    ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(
        0x10, "OB", planter.value("OB", "private CSA"))
    planter._note("private creator", "ACME HOSPITAL PACS")
    # Overlay 6000 (an overlay with burned-in-like text) and 6002, curve 5000 (retired but seen in old NM).
    for group in (0x6000, 0x6002):
        ds.add(DataElement((group << 16) | 0x0010, "US", 16))
        ds.add(DataElement((group << 16) | 0x0011, "US", 16))
        ds.add(DataElement((group << 16) | 0x0022, "LO", planter.value("LO", f"overlay {group:04X} description")))
        ds.add(DataElement((group << 16) | 0x1500, "LO", planter.value("LO", f"overlay {group:04X} label")))
        ds.add(DataElement((group << 16) | 0x3000, "OW", planter.value("OB", f"overlay {group:04X} data")))
    ds.add(DataElement(0x50002500, "LO", planter.value("LO", "curve label")))
    ds.add(DataElement(0x50003000, "OB", planter.value("OB", "curve data")))
    for keyword in ("PatientComments", "ImageComments", "StudyComments"):
        assert Tag(keyword) in planted, f"{keyword} missing from Table E.1-1 list"
    return planted


def planted_study(folder: Path, rng) -> tuple[Path, Dataset, Planter, Scan]:
    """A two-view NM whole-body file (64x16, counts < 200 so pixel bytes hold no digit runs) full of PHI."""
    scan = Scan(rng.poisson(8.0, (2, 64, 16)).astype(np.float32), (2.4, 2.4))
    path = folder / "study.dcm"
    write_scan(path, scan, {"tracer": "DPD", "activity_mbq": 700, "manufacturer": "Siemens",
                            "manufacturer_model": "Symbia T2", "collimator": "LEHR"})
    ds = pydicom.dcmread(path)
    planter = Planter()
    plant_phi(ds, planter)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path, ds, planter, scan


def leaks(haystack: bytes, planter: Planter) -> list[str]:
    haystack = haystack.lower()
    return [f"{needle.decode('latin-1')!r} (planted in {where})" for needle, where in planter.needles.items()
            if needle in haystack]


@pytest.fixture
def planted(tmp_path, rng):
    source = tmp_path / "archive"
    source.mkdir()
    path, ds, planter, scan = planted_study(source, rng)
    return source, path, ds, planter, scan


def test_planted_values_are_found_in_the_input(planted):
    """The search must be able to fail: every planted needle is found in the planted file itself."""
    _, path, ds, planter, _ = planted
    assert len(table_tags()) > 500  # the whole table, not a hand-picked list
    assert not [n for n in planter.needles if n not in path.read_bytes().lower()]


def test_no_planted_phi_survives_ingest(planted, tmp_path, capfd):
    source, path, ds, planter, scan = planted
    labels = tmp_path / "labels.csv"
    labels.write_text(f"study_instance_uid,metastasis,amyloid_grade\n{ds.StudyInstanceUID},1,0\n")
    out = tmp_path / "out"
    assert main(["ingest", str(source), "--labels", str(labels), "--out", str(out)]) == 0
    captured = capfd.readouterr()
    assert "ingested 1 new of 1 studies" in captured.out

    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"manifest.csv", "deid.key", "ingest.json"}
    assert [p.suffix for p in files].count(".dcm") == 1
    problems = {str(p.relative_to(out)): leaks(p.read_bytes(), planter) for p in files}
    problems["stdout+stderr"] = leaks((captured.out + captured.err).encode("latin-1", "replace"), planter)
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, problems

    # The key lives only in its own file.
    key_hex = (out / "deid.key").read_text().strip()
    for p in files:
        if p.name != "deid.key":
            data = p.read_bytes().lower()
            assert key_hex.encode() not in data and bytes.fromhex(key_hex) not in data

    # What the canonical copy keeps: exact counts, pseudonyms, de-identification marks, age capped, sex.
    dicom_file = next(p for p in files if p.suffix == ".dcm")
    assert np.array_equal(read_scan(dicom_file).counts, scan.counts)
    written = pydicom.dcmread(dicom_file)
    assert written.PatientIdentityRemoved == "YES"
    assert "113100" in [item.CodeValue for item in written.DeidentificationMethodCodeSequence]
    assert written.PatientAge == "090Y" and written.PatientSex == "F"
    assert not [e for e in written.iterall() if e.tag.is_private or e.tag.group in (0x5000, 0x6000, 0x6002)]
    manifest = (out / "manifest.csv").read_text()
    assert ",90," in manifest and ",F," in manifest and "DPD" in manifest


def test_no_planted_phi_survives_standalone_deidentification(planted, tmp_path):
    _, path, ds, planter, scan = planted
    clean = deidentify_dataset(pydicom.dcmread(path), KEY)
    target = tmp_path / "clean.dcm"
    clean.save_as(target, enforce_file_format=True)
    leaked = leaks(target.read_bytes(), planter)
    assert not leaked, leaked
    binary = [t for t in table_tags() if _vr(t) in ("US", "SS") and t in ds]
    assert binary and all(t not in clean or clean[t].value != ds[t].value for t in binary)
    # Still a readable NM whole-body object with the same counts and a consistent UID mapping.
    assert np.array_equal(read_scan(target).counts, scan.counts)
    again = deidentify_dataset(pydicom.dcmread(path), KEY)
    assert again.StudyInstanceUID == clean.StudyInstanceUID != ds.StudyInstanceUID
    assert clean.file_meta.MediaStorageSOPInstanceUID == clean.SOPInstanceUID


# Deliberate, declared departures from the Basic Profile: attributes kept under one of its options.
KEPT_UNDER_OPTION = {Tag("PatientSex"): "113108"}  # Retain Patient Characteristics (age is kept too, capped)


def _changed(original: Dataset, other: Dataset, tag) -> bool:
    """Removed or replaced; an attribute that was empty already carries nothing and counts as handled."""
    value = original[tag].value
    if value is None or value == "" or (original[tag].VR == "SQ" and len(value) == 0):
        return True
    return tag not in other or other[tag].value != value


def _cross_check(original: Dataset, theirs: Dataset, ours: Dataset, where="") -> list[str]:
    """Attributes dicom-anonymizer removed or replaced but synthscan kept unchanged (recursing into items)."""
    missed = []
    for element in original:
        tag = element.tag
        if _changed(original, theirs, tag) and not _changed(original, ours, tag):
            option = KEPT_UNDER_OPTION.get(tag)
            if option and option in [i.CodeValue for i in ours.get("DeidentificationMethodCodeSequence", [])]:
                continue
            missed.append(f"{where}{tag} {element.keyword}")
        elif element.VR == "SQ" and tag in theirs and tag in ours:
            for index, item in enumerate(element.value):
                if index < len(theirs[tag].value) and index < len(ours[tag].value):
                    missed += _cross_check(item, theirs[tag].value[index], ours[tag].value[index],
                                           f"{where}{element.keyword}[{index}] > ")
    return missed


def _dicomanonymizer(ds: Dataset) -> Dataset:
    theirs = copy.deepcopy(ds)
    anonymize_dataset(theirs, base_rules_gen=lambda: initialize_actions(TABLE_VERSION), delete_private_tags=True)
    return theirs


def test_cross_check_against_dicom_anonymizer_on_planted_phi(planted):
    """Every attribute dicom-anonymizer removes or replaces, synthscan removes or replaces too."""
    _, path, ds, _, _ = planted
    original = pydicom.dcmread(path)
    theirs = _dicomanonymizer(original)
    touched = [e.tag for e in original if _changed(original, theirs, e.tag)]
    assert len(touched) > 500  # it did its work: the cross-check compares something
    missed = _cross_check(original, theirs, deidentify_dataset(original, KEY))
    assert not missed, f"kept by synthscan, removed or replaced by dicom-anonymizer: {missed}"


@pytest.fixture(scope="module")
def nm1_path():
    data = pytest.importorskip("pydicom.data")
    try:
        return Path(data.get_testdata_file("JPEG-LL.dcm"))
    except Exception:  # pydicom-data not installed
        pytest.skip("pydicom-data (NM1, JPEG-LL.dcm) not installed")


def test_cross_check_against_dicom_anonymizer_on_nm1(nm1_path):
    original = pydicom.dcmread(nm1_path)
    missed = _cross_check(original, _dicomanonymizer(original), deidentify_dataset(original, KEY))
    assert not missed, f"kept by synthscan, removed or replaced by dicom-anonymizer: {missed}"


def test_nm1_identifiers_do_not_survive_ingest(nm1_path, tmp_path, capfd):
    """The real NEMA NM1 scan (single anterior view, Secondary Capture, lossless JPEG) through ingest."""
    source = tmp_path / "nm1"
    source.mkdir()
    (source / "nm1.dcm").write_bytes(nm1_path.read_bytes())
    out = tmp_path / "out"
    assert main(["ingest", str(source), "--out", str(out), "--views", "anterior"]) == 0
    captured = capfd.readouterr()
    identifiers = ["CompressedSamples", "8NM1", "St. John's Memorial", "genieacq", "BERRA", "172.16.193.2",
                   "1.3.6.1.4.1.5962.1", "1.2.840.113619.2.43", "19970806", "20040826", "19970911", "122931",
                   "185059", "125206", "GEMS_GENIE"]
    original = nm1_path.read_bytes()
    assert all(i.encode() in original for i in identifiers)  # the needles are there to be found
    outputs = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file()) + (captured.out + captured.err).encode()
    assert [i for i in identifiers if i.lower().encode() in outputs.lower()] == []
    dicom_file = next(out.rglob("*.dcm"))
    original_counts = pydicom.dcmread(nm1_path).pixel_array.astype(np.float32)
    assert np.array_equal(read_scan(dicom_file, views=("anterior",)).counts[0], original_counts)
