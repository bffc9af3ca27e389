"""``synthscan audit``: are synthetic scans near-copies of training scans, and does the generator leak membership?"""

from __future__ import annotations

from synthscan.errors import BadInputError


def register(subparsers):
    parser = subparsers.add_parser(
        "audit", help="memorization audit of synthetic scans against the training scans (report + figures)",
        description="Find each synthetic scan's nearest training scan (pixel space after alignment; with "
                    "--model or --judge also a learned feature space), compare with real-vs-real distances, flag "
                    "near-copies and test membership inference. Writes OUT/audit.md, audit.json, "
                    "nearest_neighbours.csv, reference_neighbours.csv, distances.png and flagged/*.png.")
    parser.add_argument("--samples", required=True, help="manifest of the synthetic scans")
    parser.add_argument("--train", required=True, help="manifest of the generator's training scans")
    parser.add_argument("--holdout", help="manifest of real scans of the same population NOT used for training "
                        "(calibrates the thresholds and enables the membership-inference test)")
    parser.add_argument("--model", help="generator folder: adds its encoder as a feature space and its "
                        "denoising loss / reconstruction error as membership attacks")
    parser.add_argument("--judge", help="fidelity judge folder (synthscan fidelity's OUT/judge): its penultimate "
                        "features become the learned feature space instead of the generator's encoder")
    parser.add_argument("--out", required=True, help="report folder (must not exist or be empty)")
    parser.add_argument("--false-positive-rate", type=float, default=0.01,
                        help="share of independent scans flagged by chance, all rules together (default 0.01)")
    parser.add_argument("--grid", default="128x32", help="aligned grid per view, ROWSxCOLS (default 128x32)")
    parser.add_argument("--max-pairs", type=int, default=50, help="flagged pairs drawn as PNGs (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the loss attack's noise")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    parser.add_argument("--save-index", action="store_true",
                        help="also save the fitted audit (aligned training images, features, calibrated rules; no "
                             "identifiers) to OUT/index for `synthscan sample --audit OUT/index`")
    parser.set_defaults(func=run)


def run(args) -> int:
    from synthscan.audit_report import audit

    if args.max_pairs < 0:
        raise BadInputError(f"--max-pairs must be >= 0, got {args.max_pairs}")
    if args.save_index and args.judge:
        raise BadInputError("--save-index works with the generator's encoder (--model) or pixels only: "
                            "synthscan sample cannot compute the judge's features")
    model = None
    if args.model:
        from synthscan.model.pipeline import SynthscanModel

        model = SynthscanModel.from_pretrained(args.model)
    features = judge_features(args.judge) if args.judge else None
    result = audit(args.samples, args.train, args.out, holdout_path=args.holdout, model=model, features=features,
                   features_name="fidelity judge (penultimate activations)" if args.judge else None,
                   false_positive_rate=args.false_positive_rate, grid=parse_grid(args.grid),
                   max_pairs=args.max_pairs, seed=args.seed, overwrite=args.overwrite, save_index=args.save_index)
    for line in [rule["summary"] for rule in result["rules"]] + [
            f"membership inference, {attack['summary']}" for attack in result["membership"]]:
        print(line)
    print(f"memorization detected: {'yes' if result['memorization_detected'] else 'no'}")
    print(f"wrote {args.out}/audit.md, audit.json, nearest_neighbours.csv, distances.png"
          + (", flagged/" if result["flagged_pairs"] else ""))
    return 0


def parse_grid(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise BadInputError(f"--grid must look like 128x32, got {text!r}") from None
    return rows, cols


def judge_features(folder):
    """The fidelity judge's penultimate activations as a feature function (the CLI may import evaluation/)."""
    import numpy as np

    from evaluation.fidelity import Judge
    from synthscan.preprocess import canonical_counts

    judge = Judge.load(folder)
    rows, cols = judge.config.rows, judge.config.cols
    return lambda scans: judge.features(np.stack([canonical_counts(scan, rows, cols) for scan in scans]))
