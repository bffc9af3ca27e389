"""``synthscan cam``: Grad-CAM overlays of a trained classifier on scans, and the pointing game when the
lesion centres are known (the phantom's ground truth)."""

from __future__ import annotations


def register(subparsers):
    parser = subparsers.add_parser("cam", help="Grad-CAM overlays (PNG) for a classifier run; pointing game "
                                               "against the phantom's lesion centres")
    parser.add_argument("--model", required=True, help="run folder written by classify train")
    parser.add_argument("--scans", required=True, help="manifest of real scans (no patient of the training set)")
    parser.add_argument("--out", required=True, help="folder for <study_id>.png, contact_sheet.png, cams.csv, "
                                                     "cam_summary.json")
    parser.add_argument("--lesions", help="ground-truth side file: lesion centres (metastasis) or heart centres "
                                          "(amyloidosis); default: the phantom's, found next to the manifest")
    parser.add_argument("--layer", help="module to explain, e.g. features.6 (default: end of the backbone)")
    parser.add_argument("--tolerance-mm", type=float, default=100.0, help="pointing-game hit distance (mm)")
    parser.add_argument("--max", type=int, default=64, help="at most this many scans")
    parser.add_argument("--positives", action="store_true", help="only scans with a positive label")
    parser.add_argument("--cache", help="folder for preprocessed grid counts")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    from evaluation.cam import cam_report, find_hearts, find_lesions
    from evaluation.classifier import read_config
    from synthscan.errors import BadInputError

    if args.max < 1 or args.tolerance_mm <= 0:
        raise BadInputError("--max and --tolerance-mm must be positive")
    if read_config(args.model).task == "metastasis":
        targets = find_lesions(args.scans, args.lesions)
    else:  # amyloidosis: the map should point at the heart
        hearts = find_hearts(args.scans, args.lesions)
        targets = None if hearts is None else {study: [centre] for study, centre in hearts.items()}
    summary = cam_report(args.model, args.scans, args.out, targets, args.layer, args.tolerance_mm, args.max,
                         args.positives, args.cache, not args.quiet)
    print(summary.get("summary", "no lesion centres found: overlays only (give --lesions for the pointing game)"))
    print(f"wrote {args.out} ({summary['scans']} overlays, cams.csv, contact_sheet.png)")
    return 0
