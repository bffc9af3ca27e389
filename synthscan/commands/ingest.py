"""``synthscan ingest``: a DICOM archive -> de-identified canonical store + manifest (see synthscan/ingest.py)."""

from __future__ import annotations

from synthscan.scan import VIEW_SETS


def register(subparsers):
    parser = subparsers.add_parser(
        "ingest", help="de-identify a DICOM archive into NM multi-frame files and a manifest",
        description="Walk SRC, group NM files into studies by StudyInstanceUID, de-identify (PS3.15 Basic "
                    "Profile) and write OUT/manifest.csv and OUT/dicom/. Rerun on the same OUT to add studies.")
    parser.add_argument("source", metavar="SRC", help="folder of DICOM files (searched recursively) or one file")
    parser.add_argument("--out", required=True, help="output folder (created; an earlier ingest output is extended)")
    parser.add_argument("--labels", help="CSV keyed by study_instance_uid (or accession_number) with labels: "
                                         "site, tracer, metastasis, amyloid_grade, lesion_count, time_days, event")
    parser.add_argument("--key", help="secret project key file (created when missing; keep it outside OUT to share "
                                      "OUT); default OUT/deid.key")
    parser.add_argument("--views", choices=sorted(VIEW_SETS), default="anterior+posterior",
                        help="views each study must have (single-view mode: anterior or posterior)")
    parser.add_argument("--site", help="site name written in every manifest row (a labels 'site' column wins)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip bad files and list them in OUT/rejects.csv instead of stopping")
    parser.add_argument("--posterior-mirrored", action="store_true",
                        help="the archive stores posterior views already mirrored to the front")
    parser.add_argument("--allow-burned-in", action="store_true",
                        help="accept images marked BurnedInAnnotation=YES (check them for identifying text)")
    parser.add_argument("--mask-burned-in", action="append", default=[], metavar="ROW0:ROW1,COL0:COL1",
                        help="zero this rectangle of every stored image before writing (burned-in text; 0-based, "
                             "end exclusive, empty end = image edge, e.g. 0:40,: ); repeatable; accepts "
                             "BurnedInAnnotation=YES images; recorded in the manifest (burned_in_mask, masked_counts)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="each file holds both views side by side in one image (anterior left), split at "
                             "--split-column or at the empty columns found between them")
    parser.add_argument("--split-column", type=int, metavar="N",
                        help="first column of the posterior half in side-by-side images (default: detected)")
    parser.add_argument("--pairing", metavar="CSV",
                        help="CSV with columns file (relative to SRC), study_key, view (anterior/posterior) that "
                             "pairs one-file-per-view studies whose attributes do not pair them")
    parser.add_argument("--workers", type=int, help="processes reading and writing studies (default: CPU count, "
                                                    "at most 8; 1 = no extra processes)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from synthscan.ingest import ingest
    from synthscan.io.archive import parse_region

    result = ingest(args.source, args.out, labels=args.labels, key_path=args.key, views=VIEW_SETS[args.views],
                    skip_bad=args.skip_bad, allow_burned_in=args.allow_burned_in,
                    posterior_mirrored=args.posterior_mirrored, site=args.site, workers=args.workers,
                    side_by_side=args.side_by_side, split_column=args.split_column, pairing=args.pairing,
                    mask_burned_in=[parse_region(text) for text in args.mask_burned_in])
    skipped = f", {result.n_rejected_files} file(s) skipped (rejects.csv)" if args.skip_bad else ""
    print(f"ingested {result.n_new} new of {result.n_studies} studies{skipped} -> {result.manifest}")
    return 0
