"""How an archive stores its studies, as the user describes it to ``ingest``: read options, pairing, masks.

- :class:`StorageOptions`: views wanted (single-view mode), posterior stored mirrored, both views side by
  side in one image (split given or detected), regions of burned-in text to zero.
- A **pairing file** groups one-file-per-view studies whose attributes do not pair them (views exported
  as separate studies, or views not recorded). CSV, one row per file::

      file,study_key,view
      2021/0001/img1.dcm,case-17,anterior
      2021/0001/img2.dcm,case-17,posterior

  ``file`` is relative to the source folder; ``study_key`` is any text shared by the files of one study
  (never written anywhere); ``view`` is ``anterior`` or ``posterior``. A file's recorded view, when it has
  one, must agree. Files not listed are grouped by their StudyInstanceUID as usual.
- A **mask** ``ROW0:ROW1,COL0:COL1`` is a rectangle of the stored image (0-based, ends exclusive, an empty
  end means the image edge: ``0:40,:`` is the top 40 rows); its pixels are zeroed before anything else
  (PS3.15 Clean Pixel Data Option, code 113101).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthscan.errors import BadInputError
from synthscan.io.table import read_csv_table
from synthscan.scan import VIEWS, Scan

PAIRING_COLUMNS = ("file", "study_key", "view")
_REGION = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*,\s*(\d*)\s*:\s*(\d*)\s*$")

Region = tuple[int | None, int | None, int | None, int | None]  # row0, row1, col0, col1; None = edge


@dataclass(frozen=True)
class StorageOptions:
    """How to read every study of one archive (see the module docstring)."""

    views: tuple[str, ...] = VIEWS
    posterior_mirrored: bool = False
    side_by_side: bool = False
    split_column: int | None = None
    mask: tuple[Region, ...] = ()


def parse_region(text: str) -> Region:
    """``"ROW0:ROW1,COL0:COL1"`` -> ``(row0, row1, col0, col1)``; empty ends are ``None`` (image edge)."""
    match = _REGION.match(str(text))
    if not match:
        raise BadInputError(f"mask {text!r} is not ROW0:ROW1,COL0:COL1 (e.g. 0:40,0:256 or 0:40,: for the top "
                            "40 rows)")
    row0, row1, col0, col1 = (int(v) if v else None for v in match.groups())
    for start, end, what in ((row0, row1, "rows"), (col0, col1, "columns")):
        if start is not None and end is not None and end <= start:
            raise BadInputError(f"mask {text!r}: {what} end must be greater than start")
    return row0, row1, col0, col1


def format_mask(regions) -> str:
    """Regions as the manifest records them: ``0:40,:;1000:1024,0:80``."""
    edge = lambda v: "" if v is None else str(v)  # noqa: E731
    return ";".join(f"{edge(r0)}:{edge(r1)},{edge(c0)}:{edge(c1)}" for r0, r1, c0, c1 in regions)


def read_pairing(path, source) -> dict[Path, tuple[str, str]]:
    """The pairing file as ``{resolved file: (study_key, view)}``; errors name the file, row and column."""
    path, source = Path(path), Path(source)
    frame = read_csv_table(path, "pairing file", quote_error=False, blank_is_missing=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    if sorted(frame.columns) != sorted(PAIRING_COLUMNS):
        raise BadInputError(f"pairing columns must be {', '.join(PAIRING_COLUMNS)} (found: "
                            f"{', '.join(frame.columns)})", path)
    root = source if source.is_dir() else source.parent
    pairing: dict[Path, tuple[str, str]] = {}
    rows_of: dict[tuple[str, str], int] = {}
    for index, row in frame.iterrows():
        line = index + 2
        file, key, view = (str(row[c]).strip() for c in PAIRING_COLUMNS)
        if not file or not key:
            raise BadInputError(f"row {line}: empty {'file' if not file else 'study_key'}", path)
        if view not in VIEWS:
            raise BadInputError(f"row {line}, column 'view': {view!r} is not one of {list(VIEWS)}", path)
        target = (root / file).resolve()
        if not target.is_file():
            raise BadInputError(f"row {line}: no file {file!r} under the source folder", path)
        if target in pairing:
            raise BadInputError(f"row {line}: file {file!r} is listed twice", path)
        if (key, view) in rows_of:
            raise BadInputError(f"rows {rows_of[key, view]} and {line} give study_key {key!r} two {view} files",
                                path)
        rows_of[key, view] = line
        pairing[target] = (key, view)
    if not pairing:
        raise BadInputError("pairing file has no rows", path)
    return pairing


def masked_meta(meta: dict, options: StorageOptions) -> dict:
    """``write_scan`` meta for a study read under ``options``: a mask declares the Clean Pixel Data Option
    (PS3.15 CID 7050 code 113101) and BurnedInAnnotation NO."""
    if not options.mask:
        return meta
    how = dict(meta["deidentified"])
    how["codes"] = tuple(how["codes"]) + (("113101", "Clean Pixel Data Option"),)
    how["method"] = list(how["method"]) + [f"burned-in regions zeroed {format_mask(options.mask)}"[:64]]
    return {**meta, "deidentified": how, "burned_in_annotation": "NO"}


def _recorded_views(path: Path) -> list[str] | None:
    import pydicom

    from synthscan.io.dicom import frame_views

    try:
        return frame_views(pydicom.dcmread(path, stop_before_pixels=True), path)
    except BadInputError:
        return None


def read_study(files, options: StorageOptions, file_views: dict | None = None) -> Scan:
    """Read one study under ``options``; ``file_views`` ({file: view}, from a pairing file) says which file
    holds which view, else views come from the files' attributes (:func:`synthscan.io.dicom.read_scan`)."""
    from synthscan.io.dicom import read_scan

    kwargs = {"posterior_mirrored": options.posterior_mirrored, "mask": options.mask or None}
    if not file_views:
        return read_scan(files, views=options.views, side_by_side=options.side_by_side,
                         split_column=options.split_column, **kwargs)
    by_view = {view: Path(file) for file, view in file_views.items()}
    parts = []
    for view in options.views:
        if view not in by_view:
            raise BadInputError(f"the pairing file gives this study no {view} file (only "
                                f"{' and '.join(sorted(by_view))}); use single-view mode for one-view studies",
                                files[0])
        recorded = _recorded_views(by_view[view])
        if recorded is not None and view not in recorded:
            raise BadInputError(f"the pairing file calls it {view}, but the file records "
                                f"{' and '.join(recorded)}", by_view[view])
        parts.append(read_scan(by_view[view], views=(view,), **kwargs))
    if len({p.shape for p in parts}) != 1:
        raise BadInputError(f"paired views have different matrices {sorted({p.shape for p in parts})}", files[0])
    if len({p.pixel_spacing_mm for p in parts}) != 1:
        raise BadInputError(f"paired views have different pixel spacings "
                            f"{sorted({p.pixel_spacing_mm for p in parts})}", files[0])
    meta = {"masked_counts": sum(p.meta["masked_counts"] for p in parts)} if options.mask else {}
    return Scan(np.concatenate([p.counts for p in parts]), parts[0].pixel_spacing_mm, options.views, meta)
