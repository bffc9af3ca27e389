"""Ingest a DICOM archive of whole-body bone scans into the de-identified canonical store (DESIGN.md 2, 5).

``SRC`` is walked recursively (hidden files and ``DICOMDIR`` skipped; files under ``OUT`` ignored). Every
file must be DICOM with Modality NM; files are grouped into studies by StudyInstanceUID and each study is
read with :func:`synthscan.io.dicom.read_scan` (one multi-frame file, or one file per view). Each study
becomes ``OUT/dicom/<patient pseudonym>/<study pseudonym>.dcm`` (NM multi-frame, counts exact), written
fresh by ``write_scan`` from the de-identified attributes of :func:`synthscan.io.deid.carried_meta`;
``OUT/manifest.csv`` has one row per study, identifiers are pseudonyms only.

How the archive stores its studies (:mod:`synthscan.io.archive`): single-view mode, posterior views stored
mirrored, both views side by side in one image, a pairing file for one-file-per-view studies that attributes
do not pair (``pairing``), and rectangles of burned-in text to zero (``mask_burned_in``; images marked
BurnedInAnnotation=YES are then accepted, and the manifest's extra columns ``burned_in_mask`` and
``masked_counts`` record what was zeroed).

Output folder:
- ``deid.key``: the secret project key, created on the first run unless ``key_path`` names one elsewhere.
  It is the only file in ``OUT`` that must not be shared (with it, guessed identifiers can be confirmed).
- ``ingest.json``: the run record (tool version, key fingerprint, keyed accession-number pseudonyms of the
  studies, so that a later run can match labels rows by accession number): no path, no identifier.
- ``rejects.csv`` (``skip_bad``): one row per skipped file: ``file`` is a keyed reference ``f-<hex>`` of its
  path below ``SRC`` (folder and file names in PACS exports often hold patient names), ``reason`` is
  synthscan's own message with file names and foreign error texts removed. The real paths are printed to
  stderr, for the operator only.

Bad input stops the run with one message naming the file, and ``OUT`` stays as it was: a first run builds
``OUT`` in a temporary folder renamed at the end; a rerun on an existing ``OUT`` (same key required) stages
new studies in a temporary folder inside it, keeps studies already present untouched, refreshes their
labels, and rewrites the manifest atomically, so reruns are idempotent and can add archives batch by batch.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from synthscan import __version__
from synthscan.errors import BadInputError
from synthscan.io.archive import StorageOptions, format_mask, masked_meta, read_pairing, read_study
from synthscan.io.atomic import atomic_dir, write_text
from synthscan.io.deid import (Deidentifier, carried_meta, check_burned_in, key_fingerprint, load_or_create_key,
                               patient_key)
from synthscan.io.manifest import ALLOWED, FLOAT_COLUMNS, INTEGER_COLUMNS, read_manifest, write_manifest
from synthscan.io.table import read_csv_table
from synthscan.scan import VIEWS, views_key

KEY_FILE = "deid.key"
RECORD_FILE = "ingest.json"
DICOM_FOLDER = "dicom"
LABEL_KEYS = ("study_instance_uid", "accession_number")
LABEL_COLUMNS = ("site", "tracer", "metastasis", "amyloid_grade", "lesion_count", "time_days", "event")


@dataclass
class _Study:
    uid: str
    files: list[Path] = field(default_factory=list)
    accession: str = ""
    patient: str = ""
    meta: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    file_views: dict = field(default_factory=dict)  # {file: view} from a pairing file


@dataclass(frozen=True)
class IngestResult:
    manifest: Path
    n_studies: int
    n_new: int
    n_rejected_files: int


# --------------------------------------------------------------------------------------------- reading


def _files(source: Path, out: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise BadInputError("no such file or folder", source)
    out = out.resolve()
    files = []
    for root, folders, names in os.walk(source):
        root_path = Path(root)
        folders[:] = sorted(f for f in folders if not f.startswith(".") and (root_path / f).resolve() != out)
        files += [root_path / n for n in sorted(names) if not n.startswith(".") and n.upper() != "DICOMDIR"]
    if not files:
        raise BadInputError("no files found (empty folder)", source)
    return files


def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as error:
        raise BadInputError(f"not a readable DICOM file ({type(error).__name__})", path) from None
    if ds.get("Modality") != "NM":
        raise BadInputError(f"modality is {str(ds.get('Modality', 'missing'))[:16]!r}, expected NM", path)
    if not str(ds.get("StudyInstanceUID", "") or "").strip():
        raise BadInputError("no StudyInstanceUID", path)
    return ds


def _group(files, deid: Deidentifier, allow_burned_in: bool, reject, rejected_uids: set,
           pairing: dict | None = None) -> dict[str, _Study]:
    studies: dict[str, _Study] = {}
    paired = []
    for path in files:
        try:
            ds = _read_header(path)
        except BadInputError as error:
            reject([path], error)
            continue
        uid = str(ds.StudyInstanceUID).strip()
        try:
            check_burned_in(ds, allow_burned_in, path)
        except BadInputError as error:
            rejected_uids.add(uid)
            reject([path], error)
            continue
        if pairing and path.resolve() in pairing:
            paired.append((path, ds))
        else:
            _add(studies, uid, path, ds, deid)
    if paired:
        _add_paired(studies, paired, pairing, deid)
    return studies


def _add(studies: dict, uid: str, path: Path, ds, deid: Deidentifier) -> _Study:
    study = studies.get(uid)
    if study is None:
        study = studies[uid] = _Study(uid, accession=str(ds.get("AccessionNumber", "") or "").strip(),
                                      patient=patient_key(ds), meta=carried_meta(ds, deid))
    elif patient_key(ds) != study.patient:
        raise BadInputError(f"files of one study name different patients (see {study.files[0].name})", path)
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":  # allowed: the copy says so too
        study.meta["burned_in_annotation"] = "YES"
    study.files.append(path)
    return study


def _add_paired(studies: dict, paired: list, pairing: dict, deid: Deidentifier) -> None:
    """Group the listed files by study key. A study takes the identity (StudyInstanceUID, accession, patient)
    of its anterior file (else its posterior one); one StudyInstanceUID gives at most one study."""
    attribute_uids = set(studies)
    groups: dict[str, list] = {}
    for path, ds in paired:
        key, view = pairing[path.resolve()]
        groups.setdefault(key, []).append((VIEWS.index(view), view, path, ds))
    keys_of: dict[str, str] = {}
    for key, members in groups.items():
        members.sort(key=lambda member: member[0])
        for _, _, path, ds in members:
            uid = str(ds.StudyInstanceUID).strip()
            if uid in attribute_uids:
                raise BadInputError(f"{studies[uid].files[0].name} is not in the pairing file but belongs to the "
                                    "same StudyInstanceUID as this listed file: list every file of a study, or "
                                    "none", path)
        uid = str(members[0][3].StudyInstanceUID).strip()
        if uid in keys_of:
            raise BadInputError(f"study keys {keys_of[uid]!r} and {key!r} of the pairing file start from files of "
                                "one StudyInstanceUID, which can hold only one study", members[0][2])
        keys_of[uid] = key
        for _, view, path, ds in members:
            _add(studies, uid, path, ds, deid).file_views[path] = view


# ---------------------------------------------------------------------------------------------- labels


def _read_labels(path: Path) -> pd.DataFrame:
    frame = read_csv_table(path, "labels file", quote_error=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    if not any(k in frame.columns for k in LABEL_KEYS):
        raise BadInputError(f"labels need a {' or '.join(LABEL_KEYS)} column", path)
    unknown = [c for c in frame.columns if c not in LABEL_KEYS + LABEL_COLUMNS]
    if unknown:  # an unexpected column may well hold identifiers: refuse rather than carry it
        raise BadInputError(f"unknown column(s) {unknown} (allowed: {list(LABEL_KEYS + LABEL_COLUMNS)})", path)
    for column in frame.columns:
        if column in LABEL_KEYS:
            frame[column] = frame[column].str.strip()
            continue
        for index, value in frame[column].items():
            if pd.isna(value):
                continue
            row = f"row {index + 2}, column {column!r}"
            if column in INTEGER_COLUMNS or column in FLOAT_COLUMNS:
                try:
                    number = float(value)
                except ValueError:
                    raise BadInputError(f"{row}: {value!r} is not a number", path) from None
                if column in INTEGER_COLUMNS:
                    if number != int(number):
                        raise BadInputError(f"{row}: {value!r} is not an integer", path)
                    number = int(number)
                value = number
            if column in ALLOWED and value not in ALLOWED[column]:
                raise BadInputError(f"{row}: {value!r} is not one of {sorted(ALLOWED[column])}", path)
            frame.at[index, column] = value
    return frame


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _attach_labels(frame: pd.DataFrame, path: Path, studies: dict[str, _Study], deid: Deidentifier,
                   old_rows: dict, old_accessions: dict, reject, rejected_uids: set, skip_bad: bool) -> None:
    """Give each study its labels row: by StudyInstanceUID, else AccessionNumber. Every row must match a
    study (of this run, a rejected file, or an earlier run into the same folder) and every study a row."""
    by_accession: dict[str, list[_Study]] = {}
    for study in studies.values():
        if study.accession:
            by_accession.setdefault(study.accession, []).append(study)
    columns = [c for c in frame.columns if c in LABEL_COLUMNS]
    claimed: dict[str, int] = {}
    for index, row in frame.iterrows():
        line = index + 2
        uid, accession = _text(row.get("study_instance_uid")), _text(row.get("accession_number"))
        labels = {c: row[c] for c in columns if not pd.isna(row[c])}
        if uid:
            target, by = studies.get(uid), "study_instance_uid"
            if target is None and deid.study_pseudonym(uid) in old_rows:  # ingested by an earlier run
                old_rows[deid.study_pseudonym(uid)].update({c: labels.get(c, pd.NA) for c in columns})
                continue
            if target is None and uid in rejected_uids:
                continue
        elif accession:
            matches, by = by_accession.get(accession, []), "accession_number"
            if len(matches) > 1:
                raise BadInputError(f"row {line}: accession_number matches {len(matches)} studies; "
                                    "use study_instance_uid", path)
            target = matches[0] if matches else None
            earlier = old_accessions.get(deid.accession_pseudonym(accession))
            if target is None and earlier in old_rows:  # ingested by an earlier run
                old_rows[earlier].update({c: labels.get(c, pd.NA) for c in columns})
                continue
        else:
            raise BadInputError(f"row {line}: neither study_instance_uid nor accession_number given", path)
        if target is None:  # the value itself is not echoed: it is an identifier
            error = BadInputError(f"row {line}: {by} matches no study under the source folder", path)
            if not skip_bad:
                raise error
            reject([f"{path.name} row {line}"], error)
            continue
        if target.uid in claimed:
            raise BadInputError(f"rows {claimed[target.uid]} and {line} describe the same study", path)
        claimed[target.uid] = line
        target.labels = labels
    for uid in list(studies):
        if uid not in claimed and deid.study_pseudonym(uid) not in old_rows:
            study = studies.pop(uid)
            reject(study.files, BadInputError(
                f"study has no row in {path.name} (by study_instance_uid or accession_number)", study.files[0]))


# ---------------------------------------------------------------------------------------------- output


class _Rejects:
    """Skipped files under keyed references; the real path goes to stderr only."""

    def __init__(self, deid: Deidentifier, source: Path, skip_bad: bool):
        self.deid, self.source, self.skip_bad, self.rows = deid, source, skip_bad, []

    def __call__(self, files, error: BadInputError) -> None:
        if not self.skip_bad:
            raise error
        reason = safe_reason(error, files)
        for file in files:
            relative = str(file.relative_to(self.source)) if isinstance(file, Path) and file != self.source and \
                self.source in file.parents else str(file)
            reference = "f-" + self.deid._digest("file", relative).hex()[:12]
            self.rows.append((reference, reason))
            print(f"skipped {file} [{reference}]: {reason}", file=sys.stderr)

    def write(self, path: Path) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file", "reason"])
        writer.writerows(self.rows)
        write_text(path, buffer.getvalue())


def safe_reason(error: BadInputError, files=()) -> str:
    """The problem without the file path, file names or the text of foreign exceptions (may quote values)."""
    message = str(error)
    if error.path and message.startswith(f"{error.path}: "):
        message = message[len(error.path) + 2:]
    for file in files:
        if isinstance(file, Path) and file.name:
            message = message.replace(file.name, "<file>")
    return re.sub(r"\((\w+(?:Error|Exception|Warning)):[^)]*\)", r"(\1)", message)


def _staging(out: Path, fresh: bool):
    if fresh:
        return atomic_dir(out)
    return _resume_staging(out)


@contextlib.contextmanager
def _resume_staging(out: Path):
    staging = Path(tempfile.mkdtemp(prefix=".ingest-", suffix=".tmp", dir=out))
    try:
        yield staging
        for file in sorted(staging.rglob("*")):
            target = out / file.relative_to(staging)
            if file.is_file() and not (target.is_file() and target.read_bytes() == file.read_bytes()):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(file, target)  # unchanged files keep their bytes and times: reruns are idempotent
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _open_out(out: Path, key_path):
    """(key or None, fresh, earlier manifest rows by study_id, earlier accession pseudonyms) for ``out``."""
    if out.exists() and not out.is_dir():
        raise BadInputError("output exists and is not a folder", out)
    fresh = not out.exists() or not any(out.iterdir())
    if fresh:
        if key_path and out.resolve() in Path(key_path).resolve().parents:
            raise BadInputError("a key file given with --key must lie outside the output folder (without --key "
                                f"the key is created as {KEY_FILE} in it)", key_path)
        if out.exists():
            out.rmdir()  # an empty folder: start afresh (atomic_dir renames a new one into place)
        key = load_or_create_key(key_path) if key_path else None
        return key, True, {}, {}
    record_path = out / RECORD_FILE
    if not record_path.is_file():
        raise BadInputError(f"output folder exists but holds no {RECORD_FILE}: not made by synthscan ingest", out)
    record = json.loads(record_path.read_text())
    key_file = Path(key_path) if key_path else out / KEY_FILE
    if not key_file.is_file():
        raise BadInputError("project key file missing: pass --key with the key this folder was made with", key_file)
    key = load_or_create_key(key_file)
    if key_fingerprint(key) != record.get("key_fingerprint"):
        raise BadInputError("this key is not the one the output folder was made with (fingerprints differ)",
                            key_file)
    old = {}
    if (out / "manifest.csv").is_file():
        frame = read_manifest(out / "manifest.csv")
        for _, row in frame.iterrows():
            if (out / str(row["path"])).is_file():
                old[row["study_id"]] = {k: (pd.NA if pd.isna(v) else v) for k, v in row.items()}
    return key, False, old, dict(record.get("accession_pseudonyms", {}))


# ----------------------------------------------------------------------------------------------- ingest


def ingest(source, out, labels=None, key_path=None, views=("anterior", "posterior"), skip_bad=False,
           allow_burned_in=False, posterior_mirrored=False, site=None, progress=True, workers=None,
           side_by_side=False, split_column=None, pairing=None, mask_burned_in=()) -> IngestResult:
    """Ingest ``source`` into ``out`` (see the module docstring); return where the manifest is.

    ``workers`` processes read and write the studies (default: the CPU count, at most 8; 1 = in process).
    ``side_by_side``/``split_column``, ``pairing`` (a CSV file) and ``mask_burned_in`` (regions, see
    :func:`synthscan.io.archive.parse_region`) describe the archive's storage (:mod:`synthscan.io.archive`).
    """
    from tqdm import tqdm

    source, out = Path(source), Path(out)
    if split_column is not None and not side_by_side:
        raise BadInputError("a split column needs side-by-side storage (--side-by-side)")
    if pairing is not None and side_by_side:
        raise BadInputError("a pairing file pairs one file per view; side-by-side files hold both views")
    options = StorageOptions(tuple(views), posterior_mirrored, side_by_side, split_column, tuple(mask_burned_in))
    files = _files(source, out)
    pairs = read_pairing(pairing, source) if pairing is not None else None
    labels_frame = _read_labels(Path(labels)) if labels is not None else None
    new_key = Path(key_path) if key_path and not Path(key_path).exists() else None
    key, fresh, old_rows, accessions = _open_out(out, key_path)
    new_key = out / KEY_FILE if fresh and not key_path else new_key
    with warnings.catch_warnings(), _staging(out, fresh) as staging:
        warnings.simplefilter("ignore")  # pydicom warnings quote attribute values: keep them off the log
        if key is None:
            key = load_or_create_key(staging / KEY_FILE)
        deid = Deidentifier(key)
        reject = _Rejects(deid, source, skip_bad)
        rejected_uids: set[str] = set()
        studies = _group(files, deid, allow_burned_in or bool(options.mask), reject, rejected_uids, pairs)
        if labels_frame is not None:
            _attach_labels(labels_frame, Path(labels), studies, deid, old_rows, accessions, reject, rejected_uids,
                           skip_bad)
        rows = dict(old_rows)
        todo = []
        for study in studies.values():
            study_id = deid.study_pseudonym(study.uid)
            if study_id in old_rows:  # ingested by an earlier run: keep the file, refresh the labels
                if labels_frame is not None:
                    rows[study_id].update({c: study.labels.get(c, pd.NA) for c in LABEL_COLUMNS
                                           if c in labels_frame.columns})
            else:
                relative = f"{DICOM_FOLDER}/{study.meta['patient_id']}/{study_id}.dcm"
                todo.append((study, study_id, relative))
        tasks = [(s.files, s.file_views, options, staging / r, masked_meta(s.meta, options))
                 for s, _, r in todo]
        with _mapper(workers, len(tasks)) as mapper:
            results = tqdm(mapper(_convert, tasks), total=len(tasks), desc="ingest", unit="study", file=sys.stderr,
                           disable=not progress or None)
            for (study, study_id, relative), result in zip(todo, results):
                if isinstance(result, BadInputError):
                    reject(study.files, result)
                    continue
                rows[study_id] = _manifest_row(study, study_id, relative, result, site, options)
                if study.accession:
                    accessions[deid.accession_pseudonym(study.accession)] = study_id
        new = len(rows) - len(old_rows)
        if not rows:
            raise BadInputError("no study could be ingested (all files rejected)", source)
        frame = pd.DataFrame(sorted(rows.values(), key=lambda r: (str(r["patient_id"]), str(r["study_id"]))))
        manifest = write_manifest(frame, staging / "manifest.csv")
        if skip_bad:
            reject.write(staging / "rejects.csv")
        write_text(staging / RECORD_FILE, json.dumps({
            "tool": "synthscan ingest", "version": __version__, "key_fingerprint": key_fingerprint(key),
            "deidentification": "PS3.15 Basic Profile + Clean Descriptors, Modified Dates, Patient Characteristics",
            "accession_pseudonyms": dict(sorted(accessions.items())),
        }, indent=2) + "\n")
        n_rejected = len(reject.rows)
    if new_key is not None:
        print(f"created the secret project key {new_key}: keep it (later runs into this folder need it) and do "
              "not share it", file=sys.stderr)
    return IngestResult(out / manifest.name, len(rows), new, n_rejected)


PARALLEL_FROM = 32  # fewer new studies than this are not worth starting processes for


def _quiet():
    warnings.simplefilter("ignore")


@contextlib.contextmanager
def _mapper(workers, n_tasks):
    """``map`` in this process, or over worker processes (results in order)."""
    workers = min(os.cpu_count() or 1, 8) if workers is None else int(workers)
    if workers <= 1 or n_tasks < PARALLEL_FROM:
        yield map
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, initializer=_quiet) as pool:
        yield lambda function, tasks: pool.map(function, tasks, chunksize=4)


def _convert(task):
    """Read one study and write its canonical file; a summary for the manifest, or the BadInputError."""
    from synthscan.io.dicom import write_scan

    files, file_views, options, target, meta = task
    try:
        scan = read_study(files, options, file_views)
    except BadInputError as error:
        return error
    write_scan(target, scan, meta)
    summary = {"views": views_key(scan.views), "rows": scan.shape[0], "cols": scan.shape[1],
               "pixel_spacing_mm": scan.pixel_spacing_mm[0], "total_counts": scan.total_counts}
    if options.mask:
        summary["masked_counts"] = int(round(scan.meta["masked_counts"]))
    return summary


def _manifest_row(study: _Study, study_id: str, relative: str, scan: dict, site, options: StorageOptions) -> dict:
    meta = study.meta
    camera = " ".join(v for v in (meta.get("manufacturer"), meta.get("manufacturer_model"),
                                  meta.get("collimator")) if v)
    row = {
        "study_id": study_id, "patient_id": meta["patient_id"], "site": site, "tracer": meta.get("tracer"),
        "camera": camera or None, "path": relative, **scan, "activity_mbq": meta.get("activity_mbq"),
        "uptake_minutes": meta.get("uptake_minutes"), "age_years": meta.get("patient_age_years"),
        "sex": meta.get("patient_sex"), "synthetic": 0, "source": "real",
    }
    if options.mask:
        row["burned_in_mask"] = format_mask(options.mask)
    row.update(study.labels)
    return {k: (pd.NA if v is None else v) for k, v in row.items()}
