"""``synthscan fidelity``: judge-based fidelity of a generator (evaluation/fidelity.py)."""

from __future__ import annotations

from pathlib import Path

from synthscan.errors import BadInputError


def register(subparsers):
    parser = subparsers.add_parser("fidelity", help="score synthetic scans against held-out real scans with a judge")
    parser.add_argument("--train", help="real training manifest of the judge (the generator site's training split)")
    parser.add_argument("--judge", help="a judge folder saved by an earlier run (instead of --train)")
    parser.add_argument("--test", required=True, help="held-out real scans (manifest)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", nargs="+", help="manifest(s) of synthetic scans")
    source.add_argument("--model", help="generator folder: sample --n scans with the real class mix first")
    parser.add_argument("--n", type=int, default=1000, help="scans per set for distances (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge-members", type=int, default=3,
                        help="networks of the judge fitted with --train (seeds 0, 1, ...; default 3)")
    parser.add_argument("--out", required=True, help="output folder (fidelity.md, fidelity.json, judge/)")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from evaluation.fidelity import Judge, JudgeConfig, evaluate, fit_judge, write_report
    from synthscan.io.manifest import read_manifest

    needed = ("study_id", "patient_id", "path", "views", "metastasis", "amyloid_grade")
    if args.n < 4:
        raise BadInputError(f"--n must be >= 4, got {args.n}")
    if args.judge_members < 1:
        raise BadInputError(f"--judge-members must be >= 1, got {args.judge_members}")
    if not (args.train or args.judge):
        raise BadInputError("give --train (to fit the judge) or --judge (a saved one)")
    test = read_manifest(args.test, required=needed)
    out = Path(args.out)
    judge = Judge.load(args.judge) if args.judge else fit_judge(read_manifest(args.train, required=needed),
                                                                 JudgeConfig(members=args.judge_members),
                                                                 progress=not args.quiet)
    if not args.judge:
        judge.save(out / "judge")
    model_hash = ""
    if args.model:
        synthetic, model_hash = _sample_like(args.model, test, args.n, args.seed, out / "samples", not args.quiet)
    else:
        frames = []
        for path in args.synthetic:
            frame = read_manifest(path, required=needed)
            frame["path"] = [str(Path(frame.attrs["root"]) / p) for p in frame["path"]]
            frames.append(frame)
        synthetic = pd.concat(frames, ignore_index=True)
        sources = synthetic.get("source")
        model_hash = str(sources.iloc[0]) if sources is not None and sources.nunique() == 1 else ""
    report = evaluate(judge, test, synthetic, n=args.n, seed=args.seed, progress=not args.quiet,
                      model_hash=model_hash)
    path = write_report(report, out)
    print(report.summary())
    print(f"wrote {path} and {out / 'fidelity.json'}")
    return 0


def _sample_like(model, test, n: int, seed: int, folder: Path, progress: bool):
    """n synthetic scans per condition in proportion to the held-out real class mix (at least 50 each)."""
    import pandas as pd

    from evaluation.fidelity import JUDGE_CLASSES, judge_class
    from synthscan.io.manifest import read_manifest
    from synthscan.sample import SampleRequest, sample

    labels = [judge_class(m, g) for m, g in zip(test["metastasis"], test["amyloid_grade"])]
    shares = pd.Series(labels)[lambda s: s >= 0].value_counts(normalize=True)
    model_hash = ""
    for c, condition in enumerate(JUDGE_CLASSES):
        count = max(50, int(round(n * shares.get(c, 0))))
        result = sample(SampleRequest(condition, count, folder, seed=seed), model, progress=progress)
        model_hash = result.model_hash
    return read_manifest(folder / "manifest.csv"), model_hash
