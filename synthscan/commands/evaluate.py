"""``synthscan evaluate compare|hcl``: compare two arms of classifier runs paired by seed; the H/CL baseline."""

from __future__ import annotations


def register(subparsers):
    parser = subparsers.add_parser("evaluate", help="compare classifier arms (paired by seed); H/CL baseline")
    verbs = parser.add_subparsers(dest="evaluate_command", required=True, metavar="{compare,hcl}")
    compare = verbs.add_parser(
        "compare", help="Markdown report: ROC curves per site, site matrix, gains of B over A with CIs and p-values",
        description="Each --a/--b pattern is a glob of run folders (or predictions.csv files); a run folder's "
                    "predictions.csv is found in it or below it. Runs are paired by their seed.")
    compare.add_argument("--a", required=True, nargs="+", help="baseline arm, e.g. 'runs/real-seed*'")
    compare.add_argument("--b", required=True, nargs="+", help="compared arm, e.g. 'runs/mixed-seed*'")
    compare.add_argument("--baseline", help="hcl_predictions.csv (or a folder holding one) to show next to the "
                                            "networks (amyloidosis)")
    compare.add_argument("--name-a", help="label of arm A in the report (default: its arm column)")
    compare.add_argument("--name-b", help="label of arm B in the report")
    compare.add_argument("--out", required=True, help="report folder (compare.md, figures, tables)")
    compare.set_defaults(func=run_compare)

    hcl = verbs.add_parser("hcl", help="heart-to-contralateral ratio of every scan (anterior view) and its AUC "
                                       "for amyloidosis (grade >= 2) per site")
    hcl.add_argument("--test", required=True, nargs="+", help="manifest(s) with amyloid_grade")
    hcl.add_argument("--out", required=True, help="folder for hcl_predictions.csv and summary.md")
    hcl.add_argument("--quiet", action="store_true")
    hcl.set_defaults(func=run_hcl)


def run_compare(args) -> int:
    from evaluation.compare import compare_arms

    report = compare_arms(args.a, args.b, args.out, baseline=args.baseline, name_a=args.name_a, name_b=args.name_b)
    print(report.read_text().split("\n## ")[0])
    print(f"wrote {report} and its figures")
    return 0


def run_hcl(args) -> int:
    from pathlib import Path

    import pandas as pd

    from evaluation.compare import write_test_summary
    from evaluation.hcl import hcl_predictions
    from evaluation.predict import site_frame
    from synthscan.io.atomic import atomic_path

    predictions = pd.concat([hcl_predictions(site_frame(path), not args.quiet) for path in args.test],
                            ignore_index=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "hcl_predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False, float_format="%.6g")
    print(write_test_summary(predictions, out))
    print(f"wrote {out / 'hcl_predictions.csv'} and {out / 'summary.md'}")
    return 0
