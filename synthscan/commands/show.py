"""``synthscan show``: a contact sheet of scans from a manifest, a folder of DICOM files or one file."""

from __future__ import annotations

from pathlib import Path

from synthscan.errors import BadInputError
from synthscan.scan import VIEW_SETS


def register(subparsers):
    parser = subparsers.add_parser("show", help="render scans as a contact sheet PNG (labels in captions)")
    parser.add_argument("source", help="manifest.csv, a folder of DICOM files, or one DICOM file")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--max", type=int, default=32, help="at most this many scans (default 32)")
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--percentile", type=float, default=99.5, help="window top as a body-pixel percentile")
    parser.add_argument("--views", choices=sorted(VIEW_SETS),
                        help="views to show (default: both; anterior or posterior for one-view files)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="DICOM files hold both views side by side in one image (split detected or given)")
    parser.add_argument("--split-column", type=int, metavar="N", help="split column of side-by-side images")
    parser.set_defaults(func=run)


def _caption(row) -> str:
    labels = []
    if str(row.get("metastasis")) == "1":
        lesions = row.get("lesion_count")
        labels.append("metastasis" + (f" ({lesions})" if lesions is not None and str(lesions) != "<NA>" else ""))
    grade = row.get("amyloid_grade")
    if grade is not None and str(grade) not in ("<NA>", "nan", "0"):
        labels.append(f"amyloid g{grade}")
    if not labels and str(row.get("metastasis")) == "0":
        labels.append("normal")
    site = row.get("site")
    head = str(row["study_id"])[:24]
    tail = " ".join(labels) + ("" if site is None or str(site) in ("nan", "<NA>") else f" | {site}")
    if str(row.get("synthetic")) == "1":
        tail += " | synthetic"
    return f"{head}\n{tail}"


def run(args) -> int:
    from synthscan.io.dicom import read_scan
    from synthscan.io.manifest import read_manifest, scan_path
    from synthscan.render import contact_sheet

    if args.max < 1:
        raise BadInputError(f"--max must be >= 1, got {args.max}")
    source = Path(args.source)
    views = VIEW_SETS[args.views] if args.views else None
    storage = {"side_by_side": args.side_by_side, "split_column": args.split_column}
    if args.split_column is not None and not args.side_by_side:
        raise BadInputError("--split-column needs --side-by-side")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
        files = [p for p in files if p.suffix.lower() in (".dcm", "")][: args.max]
        if not files:
            raise BadInputError("no DICOM files found", source)
        scans = [read_scan(p, views=views, **storage) for p in files]
        captions = [p.stem for p in files]
    elif source.suffix.lower() == ".csv":
        if args.side_by_side:
            raise BadInputError("--side-by-side is for DICOM files; a manifest points at canonical files", source)
        frame = read_manifest(source).head(args.max)
        scans, captions = [], []
        for index, row in frame.iterrows():
            scans.append(read_scan(scan_path(frame, index), views=views or tuple(str(row["views"]).split("+"))))
            captions.append(_caption(row.to_dict()))
    elif source.is_file():
        scans, captions = [read_scan(source, views=views, **storage)], [source.stem]
    else:
        raise BadInputError("no such file or folder", source)
    contact_sheet(scans, captions, out=args.out, columns=args.columns, percentile=args.percentile)
    print(f"wrote {args.out} ({len(scans)} scans)")
    return 0
