"""``synthscan reproduce``: the paper experiment end to end, resumable stage by stage (evaluation/reproduce.py)."""

from __future__ import annotations


def register(subparsers):
    parser = subparsers.add_parser(
        "reproduce", help="re-run the Haberl et al. (EJNMMI 2025) study design end to end (report + figures)",
        description="Simulate (or read) the generator site, a small training site and external sites; sample; "
                    "audit; judge fidelity; train classifiers in every arm and seed; test internally and "
                    "externally; survival; a simulated reader study; OUT/report.md and report.html. A rerun "
                    "into the same OUT continues where the last one stopped.")
    parser.add_argument("recipe", help="recipe TOML with a [reproduce] table, e.g. recipes/paper-cpu.toml")
    parser.add_argument("--out", required=True, help="run folder (new, or one holding a run of this recipe)")
    parser.add_argument("--stages", help="comma-separated stages to run now (default: all, in order)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")
    parser.set_defaults(func=run)


def run(args) -> int:
    from evaluation.reproduce import reproduce

    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    report = reproduce(args.recipe, args.out, stages, progress=not args.quiet)
    if report.is_file():
        print(f"wrote {report} and {report.with_suffix('.html')}")
    return 0
