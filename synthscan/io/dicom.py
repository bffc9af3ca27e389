"""Read and write whole-body bone scans as DICOM Nuclear Medicine (NM) objects with pydicom.

Writing: one NM Image Storage object per study, one frame per view (DICOM PS3.3 C.8.4, NM multi-frame with
ImageType ``...\\WHOLE BODY\\EMISSION``; frames indexed by the Detector Vector, each detector carrying a View
Code Sequence from CID 26 "Nuclear Medicine Projection": anterior SCT 399321004, posterior SCT 399001007).
Counts are stored as unsigned 16-bit integers, exactly. Posterior frames are stored as the posterior detector
sees them (from behind), as scanners do; see synthscan/scan.py for the in-memory orientation rule.

Reading: NM (or any object with Modality NM) whole-body studies as cameras store them: one multi-frame file
with anterior and posterior frames, or one file per view. Views are identified from DICOM attributes
(View Code Sequence, then ImageID / SeriesDescription / ImageType text), never from frame order.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from synthscan import __version__
from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path
from synthscan.scan import Scan, front_to_posterior, posterior_to_front

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
VIEW_CODES = {
    "anterior": ("399321004", "SCT", "Anterior emissive projection"),
    "posterior": ("399001007", "SCT", "Posterior emissive projection"),
}
# Legacy SNOMED-RT designators seen in older NM files for the same projections.
LEGACY_VIEW_CODES = {"G-A117": "anterior", "G-A11A": "posterior", "R-10206": "anterior", "R-10218": "posterior"}
TRACER_CODES = {  # CID 25 Radiopharmaceuticals
    "MDP": ("C-B1038", "SRT", "Tc-99m medronate"),
    "HMDP": ("C-B1039", "SRT", "Tc-99m oxidronate"),
    "HDP": ("C-B1039", "SRT", "Tc-99m oxidronate"),
    "DPD": ("C-B1046", "SRT", "Tc-99m DPD"),
}
MIRRORED_MARK = "POST MIRRORED"
SYNTHETIC_MARKER = "SYNTHETIC IMAGE - NOT A PATIENT"
UINT16_MAX = np.iinfo(np.uint16).max

# Keys write_scan understands; anything else is a typo and an error.
META_KEYS = frozenset({
    "patient_name", "patient_id", "patient_birth_date", "patient_sex", "patient_age_years", "patient_weight_kg",
    "patient_size_m", "study_instance_uid", "series_instance_uid", "sop_instance_uid", "frame_of_reference_uid",
    "study_date", "study_time", "accession_number", "dicom_study_id", "referring_physician",
    "performing_physician", "operator_name", "institution_name", "institution_address", "station_name",
    "manufacturer", "manufacturer_model", "device_serial_number", "software_versions", "tracer", "activity_mbq",
    "uptake_minutes", "collimator", "camera", "frame_duration_ms", "scan_velocity_mm_s", "series_description",
    "study_description", "patient_comments", "posterior_mirrored", "synthetic", "deidentified",
    "burned_in_annotation",
})


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _ds_number(value: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.6e}"[:16]


def _age_string(years) -> str:
    return f"{int(round(float(years))):03d}Y"


def write_scan(path, scan: Scan, meta: Mapping | None = None) -> Path:
    """Write ``scan`` as an NM multi-frame DICOM file (atomically) and return its path.

    ``meta`` holds optional identity and acquisition attributes (see ``META_KEYS``). ``synthetic`` may be a
    mapping of provenance (model hash, seed, condition, guidance scale, ...): the object is then marked
    DERIVED with a clear synthetic marker in its metadata, never in its pixels. Counts are rounded to integers.
    """
    meta = dict(meta or {})
    unknown = sorted(set(meta) - META_KEYS)
    if unknown:
        raise ValueError(f"write_scan: unknown meta key(s) {unknown}")
    counts = np.rint(scan.counts)
    if counts.max(initial=0) > UINT16_MAX:
        raise BadInputError(f"counts up to {counts.max():.0f} exceed the 16-bit range of the NM object", path)
    pixels = counts.astype(np.uint16)
    posterior_mirrored = bool(meta.get("posterior_mirrored", False))
    frames = [front_to_posterior(image) if view == "posterior" and not posterior_mirrored else image
              for view, image in zip(scan.views, pixels)]
    ds = _nm_dataset(scan, meta)
    ds.PixelData = np.stack(frames).tobytes()
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)


def _nm_dataset(scan: Scan, meta: dict) -> Dataset:
    synthetic = meta.get("synthetic")
    sop_uid = meta.get("sop_instance_uid") or generate_uid()
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = NM_IMAGE_STORAGE
    file_meta.MediaStorageSOPInstanceUID = sop_uid
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    file_meta.ImplementationVersionName = f"SYNTHSCAN_{__version__}"[:16]

    ds = Dataset()
    ds.file_meta = file_meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    derived = synthetic is not None or bool(meta.get("deidentified"))
    ds.ImageType = ["DERIVED" if derived else "ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"]
    ds.SOPClassUID = NM_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = meta.get("study_date", "")
    ds.StudyTime = meta.get("study_time", "")
    ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
    ds.AccessionNumber = meta.get("accession_number", "")
    ds.Modality = "NM"
    ds.Manufacturer = meta.get("manufacturer", "")
    if meta.get("institution_name"):
        ds.InstitutionName = meta["institution_name"]
    if meta.get("institution_address"):
        ds.InstitutionAddress = meta["institution_address"]
    ds.ReferringPhysicianName = meta.get("referring_physician", "")
    if meta.get("station_name"):
        ds.StationName = meta["station_name"]
    ds.StudyDescription = meta.get("study_description", "Whole-body bone scintigraphy")
    ds.SeriesDescription = meta.get("series_description", "WB ANT/POST")
    if meta.get("performing_physician"):
        ds.PerformingPhysicianName = meta["performing_physician"]
    if meta.get("operator_name"):
        ds.OperatorsName = meta["operator_name"]
    if meta.get("manufacturer_model") or meta.get("camera"):
        ds.ManufacturerModelName = meta.get("manufacturer_model") or meta["camera"]
    ds.PatientName = meta.get("patient_name", "")
    ds.PatientID = meta.get("patient_id", "")
    ds.PatientBirthDate = meta.get("patient_birth_date", "")
    ds.PatientSex = meta.get("patient_sex", "")
    if meta.get("patient_age_years") is not None:
        ds.PatientAge = _age_string(meta["patient_age_years"])
    if meta.get("patient_size_m") is not None:
        ds.PatientSize = _ds_number(meta["patient_size_m"])
    if meta.get("patient_weight_kg") is not None:
        ds.PatientWeight = _ds_number(meta["patient_weight_kg"])
    if meta.get("patient_comments"):
        ds.PatientComments = meta["patient_comments"]
    if meta.get("deidentified") or synthetic is not None:
        # ``deidentified`` is True (Basic Profile only) or a mapping {"method": [...], "codes": [(value,
        # meaning), ...] from CID 7050, "dates_modified": bool} describing the options applied.
        how = meta.get("deidentified") if isinstance(meta.get("deidentified"), Mapping) else {}
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = ("synthetic image, no patient" if synthetic is not None else
                                     how.get("method", "synthscan PS3.15 Basic Application Level Confidentiality Profile"))
        codes = how.get("codes", [("113100", "Basic Application Confidentiality Profile")])
        ds.DeidentificationMethodCodeSequence = DicomSequence([_code_item(v, "DCM", m) for v, m in codes])
        if how.get("dates_modified"):
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
    if meta.get("burned_in_annotation"):  # "YES" (text may remain) or "NO" (cleaned); absent = unknown
        ds.BurnedInAnnotation = meta["burned_in_annotation"]
    if synthetic is not None:
        ds.BurnedInAnnotation = "NO"
        ds.ImageComments = SYNTHETIC_MARKER + "; " + "; ".join(f"{k}={v}" for k, v in dict(synthetic).items())
        ds.DerivationDescription = f"Synthetic: generated by synthscan {__version__} from noise by a diffusion model"
        ds.SeriesDescription = f"SYNTHETIC {ds.SeriesDescription}"[:64]
        ds.ContentQualification = "RESEARCH"
    if meta.get("device_serial_number"):
        ds.DeviceSerialNumber = meta["device_serial_number"]
    ds.SoftwareVersions = meta.get("software_versions", f"synthscan {__version__}")
    ds.StudyInstanceUID = meta.get("study_instance_uid") or generate_uid()
    ds.SeriesInstanceUID = meta.get("series_instance_uid") or generate_uid()
    ds.StudyID = meta.get("dicom_study_id", "")
    ds.SeriesNumber = 1
    ds.Laterality = ""
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.FrameOfReferenceUID = meta.get("frame_of_reference_uid") or generate_uid()
    ds.PositionReferenceIndicator = ""

    # Image Pixel / NM Image Pixel / Multi-frame / NM Multi-frame modules.
    n_views, rows, cols = scan.counts.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = n_views
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]  # Energy Window Vector, Detector Vector
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = [_ds_number(s) for s in scan.pixel_spacing_mm]
    ds.EnergyWindowVector = [1] * n_views
    ds.NumberOfEnergyWindows = 1
    ds.DetectorVector = list(range(1, n_views + 1))
    ds.NumberOfDetectors = n_views

    # NM Image module (whole body).
    ds.CountsAccumulated = int(np.rint(scan.counts).sum())
    ds.ScanLength = int(round(rows * scan.pixel_spacing_mm[0]))
    velocity = float(meta.get("scan_velocity_mm_s", 1.67))
    ds.ScanVelocity = _ds_number(velocity)
    duration_ms = meta.get("frame_duration_ms")
    if duration_ms is None:  # a whole-body pass takes scan length / table speed
        duration_ms = 1000.0 * rows * scan.pixel_spacing_mm[0] / velocity
    ds.ActualFrameDuration = int(round(float(duration_ms)))
    ds.WholeBodyTechnique = ["1PS", "2PS"] if n_views == 2 else ["1PS"]

    # NM Isotope module.
    window = Dataset()
    window_range = Dataset()
    window_range.EnergyWindowLowerLimit, window_range.EnergyWindowUpperLimit = "126", "154"
    window.EnergyWindowRangeSequence = DicomSequence([window_range])
    window.EnergyWindowName = "Tc99m"
    ds.EnergyWindowInformationSequence = DicomSequence([window])
    pharmaceutical = Dataset()
    pharmaceutical.RadionuclideCodeSequence = DicomSequence([_code_item("C-163A8", "SRT", "^99m^Technetium")])
    tracer = meta.get("tracer")
    if tracer:
        pharmaceutical.Radiopharmaceutical = f"Tc-99m {tracer}"
        pharmaceutical.RadiopharmaceuticalCodeSequence = DicomSequence([_code_item(*TRACER_CODES[tracer])])
    if meta.get("activity_mbq") is not None:
        pharmaceutical.RadionuclideTotalDose = _ds_number(float(meta["activity_mbq"]))
    if meta.get("uptake_minutes") is not None and ds.StudyTime:
        start = datetime.datetime.strptime(ds.StudyTime[:6], "%H%M%S") - datetime.timedelta(
            minutes=float(meta["uptake_minutes"]))
        pharmaceutical.RadiopharmaceuticalStartTime = start.strftime("%H%M%S")
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([pharmaceutical])

    # NM Detector module: one item per frame's detector, the view identified by its View Code Sequence.
    detectors = []
    for view in scan.views:
        detector = Dataset()
        detector.CollimatorGridName = meta.get("collimator", "")
        detector.CollimatorType = "PARA"
        detector.ImagePositionPatient = None
        detector.ImageOrientationPatient = None
        detector.ViewCodeSequence = DicomSequence([_code_item(*VIEW_CODES[view])])
        detectors.append(detector)
    ds.DetectorInformationSequence = DicomSequence(detectors)

    # NM/PET Patient Orientation module: supine, head first.
    orientation = _code_item("F-10450", "SRT", "recumbent")
    orientation.PatientOrientationModifierCodeSequence = DicomSequence([_code_item("F-10340", "SRT", "supine")])
    ds.PatientOrientationCodeSequence = DicomSequence([orientation])
    ds.PatientGantryRelationshipCodeSequence = DicomSequence([_code_item("F-10470", "SRT", "headfirst")])
    ds.AcquisitionContextSequence = DicomSequence([])
    if meta.get("posterior_mirrored"):
        ds.ImageID = MIRRORED_MARK  # site convention: posterior frames stored already mirrored
    return ds


# ---------------------------------------------------------------------------------------------- reading


def _view_from_code(item) -> str | None:
    code = str(item.get("CodeValue", ""))
    if code in LEGACY_VIEW_CODES:
        return LEGACY_VIEW_CODES[code]
    for view, (value, _, _) in VIEW_CODES.items():
        if code == value:
            return view
    meaning = str(item.get("CodeMeaning", "")).lower()
    if meaning.startswith("anterior") or meaning == "antero-posterior":
        return "anterior"
    if meaning.startswith("posterior") or meaning == "postero-anterior":
        return "posterior"
    return None


def _view_from_text(ds: Dataset) -> str | None:
    text = " ".join(str(ds.get(k, "")) for k in ("ImageID", "SeriesDescription", "ImageComments", "ImageType"))
    tokens = set(text.upper().replace("\\", " ").replace("/", " ").replace("_", " ").replace("-", " ").split())
    anterior = bool(tokens & {"ANT", "ANTERIOR", "AP"})
    posterior = bool(tokens & {"POST", "POSTERIOR", "PA"})
    if anterior != posterior:
        return "anterior" if anterior else "posterior"
    return None


def frame_views(ds: Dataset, path=None) -> list[str]:
    """The view of every frame, from the NM Detector module (or, for single-view files, text attributes)."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    detectors = list(ds.get("DetectorInformationSequence", []))
    detector_views = [next((v for v in map(_view_from_code, d.get("ViewCodeSequence", [])) if v), None)
                      for d in detectors]
    if detectors and all(detector_views):
        vector = ds.get("DetectorVector", [1] if n_frames == 1 else [])
        vector = [vector] if isinstance(vector, int) else list(vector)
        if len(vector) == n_frames and all(1 <= int(d) <= len(detectors) for d in vector):
            return [detector_views[int(d) - 1] for d in vector]
        if len(detectors) == n_frames:
            return detector_views
    if n_frames == 1 and (view := _view_from_text(ds)):
        return [view]
    raise BadInputError(
        f"cannot tell anterior from posterior: {n_frames} frame(s) without View Code Sequence per detector "
        "or ANT/POST in ImageID/SeriesDescription", path)


def _describe(ds: Dataset) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return (f"SOP class {ds.get('SOPClassUID', '?')}, modality {ds.get('Modality', '?')}, "
            f"{ds.get('NumberOfFrames', 1)} frame(s), transfer syntax {getattr(syntax, 'name', syntax)}")


def read_dataset(path) -> Dataset:
    """Read a DICOM file with pydicom; a clear error for anything that is not a readable NM image."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as error:
        raise BadInputError(f"not a readable DICOM file ({type(error).__name__}: {error})", path) from None
    if ds.get("Modality") != "NM":
        raise BadInputError(f"modality is {ds.get('Modality', 'missing')!r}, expected NM ({_describe(ds)})", path)
    if "PixelData" not in ds:
        raise BadInputError(f"no pixel data ({_describe(ds)})", path)
    return ds


def dataset_frames(ds: Dataset, path=None) -> np.ndarray:
    """Pixel frames ``(F, H, W)`` as float32 counts, modality rescale applied, decoded from any syntax."""
    from pydicom.pixels import apply_rescale

    try:
        pixels = ds.pixel_array
    except Exception as error:  # decoders raise many types; the message says which
        raise BadInputError(f"pixel data cannot be decoded ({error}; {_describe(ds)})", path) from None
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise BadInputError(f"expected one sample per pixel (grey counts), got {ds.SamplesPerPixel} "
                            f"({_describe(ds)})", path)
    frames = pixels.reshape((-1,) + pixels.shape[-2:]) if pixels.ndim >= 2 else pixels
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        frames = apply_rescale(frames, ds)
    frames = np.asarray(frames, dtype=np.float32)
    if not np.isfinite(frames).all():
        raise BadInputError("pixel data contain NaN or infinite values", path)
    if (frames < 0).any():
        raise BadInputError(f"pixel data contain negative counts (min {frames.min():g})", path)
    return frames


def dataset_spacing(ds: Dataset, path=None) -> tuple[float, float]:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if not spacing or len(spacing) != 2:
        raise BadInputError("PixelSpacing is missing", path)
    return float(spacing[0]), float(spacing[1])


def split_side_by_side(image: np.ndarray, split_column: int | None = None, path=None) -> list[np.ndarray]:
    """Split one image holding two views side by side into two equal-width images (counts kept exactly).

    The split is ``split_column`` when given, else detected as the middle of the longest run of (nearly)
    empty columns in the central 30-70% of the width. The narrower half is zero-padded at its outer edge.
    """
    rows, cols = image.shape
    if split_column is None:
        column_sums = image.sum(axis=0)
        lo, hi = int(0.3 * cols), int(0.7 * cols)
        empty = column_sums[lo:hi] <= 0.005 * max(column_sums.max(), 1)
        best, start = (0, 0), None
        for index, is_empty in enumerate(np.append(empty, False)):
            if is_empty:
                start = index if start is None else start
            elif start is not None:
                best, start = max(best, (index - start, start)), None
        if best[0] == 0:
            raise BadInputError(
                f"cannot find the split between side-by-side views in a {rows}x{cols} image (no empty columns "
                "in its middle); give the split column explicitly", path)
        split_column = lo + best[1] + best[0] // 2
    if not 0 < split_column < cols:
        raise BadInputError(f"split column {split_column} outside the image width {cols}", path)
    left, right = image[:, :split_column], image[:, split_column:]
    width = max(left.shape[1], right.shape[1])
    left = np.pad(left, ((0, 0), (width - left.shape[1], 0)))
    right = np.pad(right, ((0, 0), (0, width - right.shape[1])))
    return [left, right]


def _file_views(ds: Dataset, frames: np.ndarray, path, wanted, single_file: bool, side_by_side, split_column):
    """(view names, frames) of one file: from attributes, or by the storage layout the caller names."""
    if side_by_side:
        if len(frames) != 1:
            raise BadInputError(f"side-by-side storage needs one frame, found {len(frames)}", path)
        return ["anterior", "posterior"], split_side_by_side(frames[0], split_column, path)
    try:
        return frame_views(ds, path), list(frames)
    except BadInputError as error:
        if len(frames) == 1 and len(wanted) == 1 and single_file:
            return list(wanted), list(frames)  # single-view mode: the user says which view this is
        if len(frames) == 1 and single_file:
            message = str(error).removeprefix(f"{error.path}: ")
            raise BadInputError(f"{message}; a one-view study needs single-view mode (--views anterior or "
                                "--views posterior)", path) from None
        raise


def mask_frames(frames: np.ndarray, regions, path=None) -> tuple[np.ndarray, float]:
    """Zero rectangles of every frame (burned-in text); return the frames and the counts removed.

    ``regions`` holds ``(row0, row1, col0, col1)`` in stored-pixel coordinates of the file's image (as a
    DICOM viewer shows it, before views are split or mirrored), ends exclusive, ``None`` for an image edge.
    """
    frames = np.array(frames, dtype=np.float32, copy=True)
    rows, cols = frames.shape[-2:]
    removed = 0.0
    for row0, row1, col0, col1 in regions:
        row0, col0 = row0 or 0, col0 or 0
        row1, col1 = rows if row1 is None else row1, cols if col1 is None else col1
        if not (0 <= row0 < row1 <= rows and 0 <= col0 < col1 <= cols):
            raise BadInputError(f"mask region rows {row0}:{row1}, columns {col0}:{col1} does not fit the "
                                f"{rows}x{cols} image", path)
        removed += float(frames[:, row0:row1, col0:col1].sum(dtype=np.float64))
        frames[:, row0:row1, col0:col1] = 0
    return frames, removed


def read_scan(paths, views: Sequence[str] | None = None, posterior_mirrored: bool = False,
              side_by_side: bool = False, split_column: int | None = None, mask=None) -> Scan:
    """Read one study from one multi-frame file or one file per view; return it in the orientation rule.

    ``views`` selects views (e.g. ``("anterior",)`` for single-view mode; a one-frame file whose view is not
    recorded is then taken as that view); by default both are required. ``posterior_mirrored`` says the
    archive stores posterior images already mirrored to the front. ``side_by_side`` says one image holds
    anterior (left) and posterior (right) next to each other (split at ``split_column`` or detected).
    ``mask`` zeroes regions of every stored image first (see :func:`mask_frames`); the scan's
    ``meta["masked_counts"]`` then says how many counts were removed from the images read.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not paths:
        raise BadInputError("no files for this study")
    wanted = tuple(views) if views else ("anterior", "posterior")
    found: dict[str, tuple[np.ndarray, tuple[float, float], Path]] = {}
    masked_counts = 0.0
    for path in paths:
        ds = read_dataset(path)
        frames = dataset_frames(ds, path)
        if mask:
            frames, removed = mask_frames(frames, mask, path)
            masked_counts += removed
        names, frames = _file_views(ds, frames, path, wanted, len(paths) == 1, side_by_side, split_column)
        if len(names) != len(frames):
            raise BadInputError(f"{len(frames)} frames but {len(names)} views described", path)
        spacing = dataset_spacing(ds, path)
        mirrored = posterior_mirrored or MIRRORED_MARK in str(ds.get("ImageID", "")).upper()
        for name, frame in zip(names, frames):
            if name in found:
                raise BadInputError(f"the {name} view appears twice in this study ({found[name][2].name})", path)
            if name == "posterior" and not mirrored:
                frame = posterior_to_front(frame)
            found[name] = (frame, spacing, path)
    missing = [v for v in wanted if v not in found]
    if missing:
        raise BadInputError(f"study lacks the {' and '.join(missing)} view (found: {sorted(found) or 'none'}); "
                            "use single-view mode (--views anterior) for one-view studies", paths[0])
    shapes = {found[v][0].shape for v in wanted}
    if len(shapes) != 1:
        raise BadInputError(f"views have different matrices {sorted(shapes)}", paths[0])
    spacings = {found[v][1] for v in wanted}
    if len(spacings) != 1:
        raise BadInputError(f"views have different pixel spacings {sorted(spacings)}", paths[0])
    counts = np.stack([found[v][0] for v in wanted])
    return Scan(counts, spacings.pop(), wanted, {"masked_counts": masked_counts} if mask else {})
