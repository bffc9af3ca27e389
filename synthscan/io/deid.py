"""De-identification of DICOM datasets: the PS3.15 Basic Application Level Confidentiality Profile.

DICOM PS3.15 Annex E, Table E.1-1 (Basic Profile, code 113100) with three of its options:
Clean Descriptors (113105), Retain Longitudinal Temporal Information with Modified Dates (113107) and
Retain Patient Characteristics (113108, age and sex only).

The de-identifier denies by default: an attribute survives only if it is on the retain list below (K:
technical image, NM acquisition and code-item attributes, none of them in Table E.1-1) or has an explicit
action (Z empty, D replace by a pseudonym or a shifted date, C clean to a fixed vocabulary, U keyed UID).
Everything else, every private attribute, overlays (60xx), curves (50xx) and every unknown attribute is
removed (X). Table E.1-1 actions are thereby met or exceeded (X in place of Z/D/K where the IOD allows).

Keyed pseudonyms (one secret project key, HMAC-SHA256):
- UIDs: ``2.25.<first 128 bits of HMAC(key, uid)>``; registered DICOM UIDs (SOP classes, transfer syntaxes,
  coding schemes) are kept. Same input UID -> same output UID under the same key, across runs and sites.
- patient and study pseudonyms ``p-<16 hex>`` / ``s-<16 hex>`` from HMAC of issuer + PatientID and of
  StudyInstanceUID; never containing the original identifier.
- dates: shifted back by a keyed per-patient number of days (365 to 3,649), so intervals between one
  patient's studies are kept; times of day are removed; the birth date is removed, age kept (capped at 90).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID_dictionary, generate_uid

from synthscan import __version__
from synthscan.errors import BadInputError

KEY_BYTES = 32
AGE_CAP_YEARS = 90  # ages above this are reported as 90 (HIPAA Safe Harbor)
SHIFT_DAYS = (365, 3650)  # dates move back by a keyed per-patient number of days in [365, 3650)
METHOD = [f"synthscan {__version__} PS3.15 Basic Profile", "keyed UIDs and pseudonyms",  # LO, 64 chars each
          "dates shifted per patient, times removed", "age (capped at 90) and sex retained",
          "descriptors cleaned to a fixed vocabulary"]
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113105", "Clean Descriptors Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)

# K: kept as they are (technical attributes; none is listed in PS3.15 Table E.1-1).
RETAIN = frozenset({
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "Modality", "Manufacturer", "ManufacturerModelName",
    "SoftwareVersions", "SeriesNumber", "InstanceNumber", "AcquisitionNumber", "PatientOrientation",
    "Laterality", "PositionReferenceIndicator", "BodyPartExamined", "BurnedInAnnotation",
    "RecognizableVisualFeatures", "LossyImageCompression", "LossyImageCompressionRatio",
    "LossyImageCompressionMethod", "ConversionType", "ContentQualification",
    # Image Pixel, Multi-frame, NM Image Pixel, Modality LUT, VOI LUT.
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
    "HighBit", "PixelRepresentation", "PlanarConfiguration", "PixelData", "NumberOfFrames",
    "FrameIncrementPointer", "PixelSpacing", "ImagerPixelSpacing", "PixelAspectRatio", "RescaleSlope",
    "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth", "VOILUTFunction",
    "SmallestImagePixelValue", "LargestImagePixelValue", "PresentationLUTShape", "FrameTime",
    # NM Multi-frame, NM Image, NM Isotope, NM Detector, NM/PET Patient Orientation, Image Plane.
    "EnergyWindowVector", "NumberOfEnergyWindows", "DetectorVector", "NumberOfDetectors", "PhaseVector",
    "NumberOfPhases", "RotationVector", "NumberOfRotations", "RRIntervalVector", "NumberOfRRIntervals",
    "TimeSlotVector", "NumberOfTimeSlots", "SliceVector", "NumberOfSlices", "AngularViewVector",
    "TimeSliceVector", "CountsAccumulated", "AcquisitionTerminationCondition", "ActualFrameDuration",
    "CountsSource", "TableTraverse", "TableHeight", "ScanVelocity", "WholeBodyTechnique", "ScanLength",
    "CorrectedImage", "DecayCorrection", "Units", "TriggerSourceOrType", "SliceProgressionDirection",
    "EnergyWindowInformationSequence", "EnergyWindowRangeSequence", "EnergyWindowLowerLimit",
    "EnergyWindowUpperLimit", "EnergyWindowName", "RadiopharmaceuticalInformationSequence",
    "RadionuclideCodeSequence", "RadiopharmaceuticalCodeSequence", "RadionuclideTotalDose",
    "RadionuclideHalfLife", "RadionuclidePositronFraction", "RadiopharmaceuticalVolume",
    "RadiopharmaceuticalRoute", "AdministrationRouteCodeSequence", "DetectorInformationSequence",
    "CollimatorType", "FieldOfViewShape", "FieldOfViewDimensions", "FocalDistance", "XFocusCenter",
    "YFocusCenter", "ZoomFactor", "ZoomCenter", "CenterOfRotationOffset", "GantryDetectorTilt",
    "DistanceSourceToDetector", "StartAngle", "RadialPosition", "ImagePositionPatient",
    "ImageOrientationPatient", "SliceThickness", "SpacingBetweenSlices", "ViewCodeSequence",
    "ViewModifierCodeSequence", "PatientOrientationCodeSequence", "PatientOrientationModifierCodeSequence",
    "PatientGantryRelationshipCodeSequence",
    # Code Sequence Macro items (inside the sequences kept above).
    "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning", "LongCodeValue",
    "URNCodeValue", "MappingResource", "ContextIdentifier", "ContextUID",
})
# Z: present but empty (Type 2 in the NM Image IOD).
EMPTY = frozenset({"StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID", "PatientBirthDate",
                   "ContentTime"})
EMPTY_SEQUENCES = frozenset({"AcquisitionContextSequence"})
# D: dates shifted per patient.
SHIFTED_DATES = frozenset({"StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"})
# C: cleaned to words of a fixed vocabulary (view, body region, tracer and collimator terms).
CLEANED = frozenset({"SeriesDescription", "ImageID", "Radiopharmaceutical", "CollimatorGridName"})
VOCABULARY = frozenset("""
ANT ANTERIOR POST POSTERIOR AP PA WB WHOLE BODY BONE SCAN SCINTIGRAPHY EMISSION STATIC SWEEP SPOT VIEW
MIRRORED LEFT RIGHT HEAD FEET TC TC99M 99M 99MTC TECHNETIUM MDP HMDP HDP DPD MEDRONATE OXIDRONATE
LEHR LEGP LEAP LEUHR LEHS MEGP HEGP LE HR GP PARA PARALLEL COLLIMATOR DETECTOR 1 2 NM
""".split())
SEXES = frozenset({"M", "F", "O"})
TRACER_CODES = {"C-B1038": "MDP", "C-B1039": "HMDP", "C-B1046": "DPD", "C-B1043": "DPD"}
TRACER_WORDS = {"MDP": "MDP", "MEDRONATE": "MDP", "HMDP": "HMDP", "HDP": "HDP", "OXIDRONATE": "HMDP",
                "DPD": "DPD"}
COLLIMATORS = ("LEHR", "LEGP", "LEAP", "LEUHR", "LEHS", "MEGP", "HEGP")


# --------------------------------------------------------------------------------------------- the key


def load_or_create_key(path) -> bytes:
    """The secret project key in ``path`` (64 hex digits); created (mode 0600) when the file is missing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(KEY_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.hex() + "\n")
        return key
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise BadInputError("not a project key file (expected at least 32 hex digits)", path)
    return key


def key_fingerprint(key: bytes) -> str:
    """A short public check value of a key (records which key made an output, without revealing it)."""
    return hmac.new(key, b"synthscan key fingerprint", hashlib.sha256).hexdigest()[:16]


# ------------------------------------------------------------------------------------- the de-identifier


class Deidentifier:
    """Keyed pseudonyms, UIDs and date shifts for one project key."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("the project key must have at least 16 bytes")
        self._key = bytes(key)
        self._uids: dict[str, str] = {}

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, uid: str) -> str:
        """Keyed replacement of an instance UID; registered DICOM UIDs are returned unchanged."""
        uid = str(uid).strip().rstrip("\0")
        if not uid or uid in UID_dictionary:
            return uid
        if uid not in self._uids:
            self._uids[uid] = "2.25." + str(int.from_bytes(self._digest("uid", uid)[:16], "big"))
        return self._uids[uid]

    def _pseudonym(self, prefix: str, purpose: str, original: str) -> str:
        for attempt in range(1000):  # never let the digits contain the original (short numeric ids, by chance)
            digits = self._digest(purpose, f"{attempt}:{original}").hex()[:16]
            if not any(part.lower() in digits for part in original.split(":") if part):
                return f"{prefix}-{digits}"
        raise AssertionError("unreachable: 1000 digests all contain the original")

    def patient_pseudonym(self, patient: str) -> str:
        """``patient`` is :func:`patient_key` of a dataset (issuer and PatientID, ...)."""
        return self._pseudonym("p", "patient", patient)

    def study_pseudonym(self, study_instance_uid: str) -> str:
        return self._pseudonym("s", "study", study_instance_uid)

    def accession_pseudonym(self, accession_number: str) -> str:
        return self._pseudonym("a", "accession", accession_number)

    def shift_days(self, patient: str) -> int:
        low, high = SHIFT_DAYS
        return low + int.from_bytes(self._digest("date shift", patient)[:8], "big") % (high - low)

    def shift_date(self, value: str, patient: str) -> str:
        """A DA value moved back by the patient's shift; '' for an empty or unreadable date."""
        try:
            date = datetime.datetime.strptime(str(value).strip()[:8], "%Y%m%d").date()
        except ValueError:
            return ""
        return (date - datetime.timedelta(days=self.shift_days(patient))).strftime("%Y%m%d")

    # ---------------------------------------------------------------------------------- datasets

    def dataset(self, ds: Dataset, *, allow_burned_in: bool = False, path=None) -> Dataset:
        """A de-identified copy of ``ds`` (the input is not changed)."""
        check_burned_in(ds, allow_burned_in, path)
        patient = patient_key(ds)
        out = self._clean(ds, patient, top=True)
        for keyword in ("PatientName", "PatientID"):
            if keyword in ds:
                setattr(out, keyword, self.patient_pseudonym(patient))
        if "PatientSex" in ds:
            out.PatientSex = sex_of(ds) or ""
        age = age_years(ds)
        if age is not None:
            out.PatientAge = f"{age:03d}Y"
        mark_deidentified(out)
        if hasattr(ds, "file_meta"):
            out.file_meta = self._file_meta(ds, out)
        return out

    def _clean(self, ds: Dataset, patient: str, top: bool) -> Dataset:
        out = Dataset()
        for tag in ds.keys():
            if tag.is_private or tag.group in (0x0002, 0xFFFC) or (tag.group & 0xFF00) in (0x5000, 0x6000):
                continue
            element = ds[tag]
            keyword = element.keyword
            if element.VR == "UI" and keyword:
                values = element.value if element.VM > 1 else [element.value]
                new = [self.uid(v) for v in values if v]
                out.add(DataElement(tag, "UI", new if element.VM > 1 else (new[0] if new else "")))
            elif keyword in EMPTY:
                out.add(DataElement(tag, element.VR, ""))
            elif keyword in EMPTY_SEQUENCES:
                out.add(DataElement(tag, "SQ", DicomSequence([])))
            elif keyword in SHIFTED_DATES:
                out.add(DataElement(tag, "DA", self.shift_date(element.value, patient) if element.value else ""))
            elif keyword in CLEANED:
                out.add(DataElement(tag, element.VR, clean_descriptor(element.value)))
            elif keyword in RETAIN:
                if element.VR == "SQ":
                    items = [self._clean(item, patient, top=False) for item in element.value]
                    out.add(DataElement(tag, "SQ", DicomSequence(items)))
                else:
                    out.add(DataElement(tag, element.VR, copy.copy(element.value)))
        return out

    def _file_meta(self, ds: Dataset, out: Dataset) -> FileMetaDataset:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = out.get("SOPClassUID", ds.file_meta.get("MediaStorageSOPClassUID"))
        meta.MediaStorageSOPInstanceUID = out.get("SOPInstanceUID") or generate_uid()
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = f"SYNTHSCAN_{__version__}"[:16]
        return meta


def deidentify_dataset(ds: Dataset, key: bytes, *, allow_burned_in: bool = False, path=None) -> Dataset:
    """A de-identified copy of one dataset under the project ``key`` (see the module docstring)."""
    return Deidentifier(key).dataset(ds, allow_burned_in=allow_burned_in, path=path)


def mark_deidentified(ds: Dataset) -> None:
    """PS3.15 E.1.1: say that identity was removed, how, and that dates were modified."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    items = []
    for value, meaning in METHOD_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED"


# ----------------------------------------------------------------------------- attributes carried over


def check_burned_in(ds: Dataset, allow: bool, path=None) -> None:
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES" and not allow:
        raise BadInputError("BurnedInAnnotation is YES: the pixels may show identifying text; refused "
                            "(allow it explicitly only after checking the images)", path)


def patient_key(ds: Dataset) -> str:
    """What identifies the patient for pseudonyms and date shifts: issuer + PatientID, else name + birth
    date, else the study (then each study is its own patient)."""
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id:
        return f"id:{str(ds.get('IssuerOfPatientID', '') or '').strip()}:{patient_id}"
    name, birth = str(ds.get("PatientName", "") or "").strip(), str(ds.get("PatientBirthDate", "") or "").strip()
    if name:
        return f"name:{name.upper()}:{birth}"
    return f"study:{str(ds.get('StudyInstanceUID', '') or '').strip()}"


def clean_descriptor(value) -> str:
    """Keep only words of the fixed vocabulary (Clean Descriptors Option): free text loses any name."""
    words = re.split(r"[^A-Za-z0-9]+", str(value or ""))
    return " ".join(w.upper() for w in words if w.upper() in VOCABULARY)[:64]


def sex_of(ds: Dataset) -> str | None:
    sex = str(ds.get("PatientSex", "") or "").strip().upper()
    return sex if sex in SEXES else None


def age_years(ds: Dataset) -> int | None:
    """Age in whole years from PatientAge, else birth date and study date; capped at 90; None if unknown."""
    text = str(ds.get("PatientAge", "") or "").strip().upper()
    age = None
    if re.fullmatch(r"\d{3}[DWMY]", text):
        age = int(text[:3]) // {"D": 365, "W": 52, "M": 12, "Y": 1}[text[3]]
    else:
        try:
            birth = datetime.datetime.strptime(str(ds.get("PatientBirthDate", ""))[:8], "%Y%m%d").date()
            study = datetime.datetime.strptime(str(ds.get("StudyDate", ""))[:8], "%Y%m%d").date()
        except ValueError:
            return None
        age = study.year - birth.year - ((study.month, study.day) < (birth.month, birth.day))
        if age < 0:
            return None
    return min(age, AGE_CAP_YEARS)


def tracer_of(ds: Dataset) -> str | None:
    """MDP, HMDP, HDP or DPD from the radiopharmaceutical code or words; None when not recognised."""
    for info in ds.get("RadiopharmaceuticalInformationSequence", []):
        for code in info.get("RadiopharmaceuticalCodeSequence", []):
            if str(code.get("CodeValue", "")) in TRACER_CODES:
                return TRACER_CODES[str(code.CodeValue)]
        for word in re.split(r"[^A-Za-z0-9]+", str(info.get("Radiopharmaceutical", "")).upper()):
            if word in TRACER_WORDS:
                return TRACER_WORDS[word]
    return None


def activity_mbq(ds: Dataset) -> float | None:
    for info in ds.get("RadiopharmaceuticalInformationSequence", []):
        try:
            dose = float(info.get("RadionuclideTotalDose", "") or "nan")
        except (TypeError, ValueError):
            continue
        if 0 < dose < 10_000:
            return dose
    return None


def _time_of(date_time: str, time: str) -> datetime.datetime | None:
    for text, form in ((str(date_time or "")[:14], "%Y%m%d%H%M%S"), ("19000101" + str(time or "")[:6], "%Y%m%d%H%M%S")):
        try:
            return datetime.datetime.strptime(text, form)
        except ValueError:
            continue
    return None


def uptake_minutes(ds: Dataset) -> float | None:
    """Minutes from injection to acquisition (computed from the original times, which are not kept)."""
    start = None
    for info in ds.get("RadiopharmaceuticalInformationSequence", []):
        start = _time_of(info.get("RadiopharmaceuticalStartDateTime"), info.get("RadiopharmaceuticalStartTime"))
        if start:
            break
    acquired = (_time_of(ds.get("AcquisitionDateTime"), ds.get("AcquisitionTime"))
                or _time_of("", ds.get("SeriesTime")) or _time_of("", ds.get("StudyTime")))
    if start is None or acquired is None:
        return None
    if (start.year == 1900) != (acquired.year == 1900):  # one has a date, the other not: compare times only
        start, acquired = start.replace(year=1900, month=1, day=1), acquired.replace(year=1900, month=1, day=1)
    minutes = (acquired - start).total_seconds() / 60
    if start.year == 1900 and minutes < 0:
        minutes += 24 * 60
    return round(minutes, 1) if 0 < minutes <= 24 * 60 else None


def collimator_of(ds: Dataset) -> str | None:
    for detector in ds.get("DetectorInformationSequence", []):
        words = set(re.split(r"[^A-Za-z0-9]+", str(detector.get("CollimatorGridName", "")).upper()))
        for name in COLLIMATORS:
            if name in words:
                return name
    return None


def _printable(value, limit=64) -> str:
    return re.sub(r"[^ -~]", "", str(value or "")).strip()[:limit]


def _number(ds: Dataset, keyword: str) -> float | None:
    try:
        value = float(ds.get(keyword, "") or "nan")
    except (TypeError, ValueError):
        return None
    return value if value == value and value > 0 else None


def carried_meta(ds: Dataset, deid: Deidentifier) -> dict:
    """The attributes ingest carries into the canonical store, de-identified (``write_scan`` meta keys).

    Only pseudonyms, keyed UIDs, the shifted study date, age (capped) and sex, and acquisition facts mapped
    to a vocabulary or a number: nothing free-text from the input except the camera's manufacturer and
    model, which PS3.15 keeps (not in Table E.1-1).
    """
    patient = patient_key(ds)
    study_uid = str(ds.StudyInstanceUID)
    pseudonym = deid.patient_pseudonym(patient)
    meta = {
        "patient_name": pseudonym, "patient_id": pseudonym,
        "study_instance_uid": deid.uid(study_uid),
        "series_instance_uid": deid.uid(f"{study_uid}.canonical-series"),
        "sop_instance_uid": deid.uid(f"{study_uid}.canonical-image"),
        "frame_of_reference_uid": deid.uid(str(ds.get("FrameOfReferenceUID", "") or f"{study_uid}.for")),
        "study_date": deid.shift_date(ds.get("StudyDate", ""), patient),
        "deidentified": {"method": METHOD, "codes": METHOD_CODES, "dates_modified": True},
    }
    optional = {
        "patient_sex": sex_of(ds), "patient_age_years": age_years(ds), "tracer": tracer_of(ds),
        "activity_mbq": activity_mbq(ds), "uptake_minutes": uptake_minutes(ds), "collimator": collimator_of(ds),
        "manufacturer": _printable(ds.get("Manufacturer")) or None,
        "manufacturer_model": _printable(ds.get("ManufacturerModelName")) or None,
        "frame_duration_ms": _number(ds, "ActualFrameDuration"), "scan_velocity_mm_s": _number(ds, "ScanVelocity"),
    }
    meta.update({k: v for k, v in optional.items() if v is not None})
    return meta
