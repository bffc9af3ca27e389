"""``synthscan mix``: inject synthetic scans into a real training manifest (synthscan/mix.py)."""

from __future__ import annotations

import json
from pathlib import Path

from synthscan.errors import BadInputError


def register(subparsers):
    parser = subparsers.add_parser(
        "mix", help="add synthetic scans to a real training manifest (by ratio, per-class balance or counts)",
        description="Add synthetic scans to a real TRAINING manifest. Synthetic scans never belong in "
                    "validation or test sets.")
    parser.add_argument("--real", required=True, help="real training manifest.csv")
    parser.add_argument("--synthetic", required=True, nargs="+", help="manifest(s) of synthetic scans")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--ratio", type=float, help="synthetic scans per real scan (of each class)")
    how.add_argument("--counts", help="fixed counts per condition, e.g. normal=100,metastasis=200,amyloidosis-g3=50")
    parser.add_argument("--balance", choices=["per-class"],
                        help="equalize the classes (with --ratio: within a budget of ratio x real scans)")
    parser.add_argument("--conditions", help="only add these classes, e.g. metastasis (default: all real classes)")
    parser.add_argument("--seed", type=int, default=0, help="which synthetic scans are drawn (default 0)")
    parser.add_argument("--out", required=True, help="mixed manifest.csv to write (paths rewritten to resolve)")
    parser.set_defaults(func=run)


def parse_counts(text: str) -> dict[str, int]:
    counts = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        try:
            counts[key.strip()] = int(value)
        except ValueError:
            raise BadInputError(f"--counts: {item!r} is not condition=number") from None
    if not counts:
        raise BadInputError("--counts is empty")
    return counts


def run(args) -> int:
    import pandas as pd

    from synthscan.io.atomic import write_text
    from synthscan.io.manifest import read_manifest, write_manifest
    from synthscan.mix import mix, mix_summary, rebase_paths

    if args.counts is not None and args.balance is not None:
        raise BadInputError("--counts fixes the numbers; it cannot be combined with --balance")
    if args.counts is None and args.ratio is None and args.balance is None:
        raise BadInputError("say how much to mix: --ratio, --balance per-class, or --counts")
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise BadInputError("--out must name a .csv manifest file", out)
    real = read_manifest(args.real)
    parts = []
    for path in args.synthetic:
        part = read_manifest(path)
        parts.append(rebase_paths(part, out.parent))  # several sources: give them one root first
    synthetic = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    synthetic.attrs = {"root": str(out.parent.resolve()),
                       "path": args.synthetic[0] if len(args.synthetic) == 1 else ", ".join(args.synthetic)}
    if synthetic["study_id"].duplicated().any():
        raise BadInputError(f"study_id {synthetic['study_id'][synthetic['study_id'].duplicated()].iloc[0]!r} "
                            "appears in several synthetic manifests")
    conditions = None if args.conditions is None else [c.strip() for c in args.conditions.split(",") if c.strip()]
    counts = None if args.counts is None else parse_counts(args.counts)
    mixed = mix(real, synthetic, ratio=args.ratio, balance=args.balance, counts=counts, conditions=conditions,
                seed=args.seed, out_root=out.parent)
    write_manifest(mixed, out)
    summary = mix_summary(mixed)
    settings = {"real": str(args.real), "synthetic": list(map(str, args.synthetic)), "ratio": args.ratio,
                "balance": args.balance, "counts": counts, "conditions": conditions, "seed": args.seed,
                "scans": {k: {c: int(v) for c, v in row.items()} for k, row in summary.iterrows()}}
    write_text(out.with_suffix(".mix.json"), json.dumps(settings, indent=2) + "\n")
    print(summary.to_string())
    print(f"wrote {out} ({len(mixed)} scans) and {out.with_suffix('.mix.json')}")
    return 0
