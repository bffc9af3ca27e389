"""``synthscan reader-study``: blinded real-vs-synthetic reader study (make packets, score answers, simulate readers)."""

from __future__ import annotations

from synthscan.errors import BadInputError


def _matrix(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BadInputError(f"--matrix must look like 512x128, got {text!r}") from None
    return rows, cols


def _integers(text: str) -> list[int]:
    try:
        return [int(v) for v in str(text).split(",")]
    except ValueError:
        raise BadInputError(f"expected comma-separated integers, got {text!r}") from None


def register(subparsers):
    parser = subparsers.add_parser("reader-study", help="blinded reader study: make packets, score, simulate",
                                   description="Blinded real-vs-synthetic reader study: make packets, score "
                                               "answers, simulate readers.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    make = actions.add_parser("make", help="one offline HTML packet per reader plus a separate answer key")
    make.add_argument("--real", required=True, help="manifest of real scans")
    make.add_argument("--synthetic", required=True, help="manifest of synthetic scans (synthscan sample)")
    make.add_argument("--cases", type=int, default=400, help="cases per packet (default 400)")
    make.add_argument("--readers", type=int, default=4, help="packets, one per reader (default 4)")
    make.add_argument("--synthetic-fraction", type=float, default=0.5)
    make.add_argument("--equal-conditions", action="store_true",
                      help="equal numbers per condition (default: the real manifest's condition mix)")
    make.add_argument("--shared-order", action="store_true", help="one random order for every reader")
    make.add_argument("--views", default="anterior+posterior", choices=["anterior+posterior", "anterior",
                                                                        "posterior"])
    make.add_argument("--matrix", help="display grid per view, e.g. 512x128 (default: smallest matrix of the cases)")
    make.add_argument("--percentile", type=float, default=99.5, help="window top, body-pixel percentile")
    make.add_argument("--counts-per-view", type=float, help="thin busier scans to this many counts per view")
    make.add_argument("--title", default="Bone scintigraphy reader study")
    make.add_argument("--seed", type=int, help="default: fresh randomness, recorded in the key")
    make.add_argument("--protect", action="store_true",
                      help="hash the key's truth with the passphrase in $SYNTHSCAN_READER_KEY_PASSPHRASE")
    make.add_argument("--out", required=True, help="new folder for packets and key.json")

    score = actions.add_parser("score", help="accuracy, Fleiss' kappa, diagnosis and quality; report + figures")
    score.add_argument("--key", required=True, help="key.json written by make")
    score.add_argument("--responses", required=True, nargs="+", help="exported CSV files (or folders of them)")
    score.add_argument("--out", required=True, help="results folder (report.md, results.json, figures)")
    score.add_argument("--n-boot", type=int, default=2000)
    score.add_argument("--seed", type=int, default=0, help="bootstrap seed")

    simulate = actions.add_parser("simulate", help="simulated readers: dry-run responses, or --plan a study")
    simulate.add_argument("--key", help="key.json: write one simulated response file per packet")
    simulate.add_argument("--plan", action="store_true", help="CI widths for --cases x --readers designs")
    simulate.add_argument("--readers", help="readers (packets) to simulate; with --plan a list, e.g. 2,4,6")
    simulate.add_argument("--cases", default="100,200,400", help="with --plan: case counts, e.g. 100,200,400")
    simulate.add_argument("--accuracy", type=float, default=0.5, help="real/synthetic accuracy (default 0.5)")
    agreement = simulate.add_mutually_exclusive_group()
    agreement.add_argument("--correlation", type=float, default=None,
                           help="latent correlation of readers' correctness on a case (default 0)")
    agreement.add_argument("--kappa", type=float, default=None, help="target Fleiss' kappa instead")
    simulate.add_argument("--reader-sd", type=float, default=0.0, help="spread of reader skill (probit scale)")
    simulate.add_argument("--diagnostic-accuracy", type=float, default=0.8)
    simulate.add_argument("--quality-shift", type=float, default=0.0, help="synthetic minus real mean quality")
    simulate.add_argument("--n-sim", type=int, default=500, help="with --plan: simulated studies per design")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--out", required=True, help="folder for simulated-*.csv (or plan.csv)")
    parser.set_defaults(func=run)


def run(args) -> int:
    return {"make": run_make, "score": run_score, "simulate": run_simulate}[args.action](args)


def run_make(args) -> int:
    from tqdm import tqdm

    from reader_study.key import PASSPHRASE_ENV, passphrase_from_env
    from reader_study.packet import StudySettings, make_study_from_manifests

    passphrase = passphrase_from_env() if args.protect else None
    if args.protect and not passphrase:
        raise BadInputError(f"--protect needs a passphrase in ${PASSPHRASE_ENV}")
    settings = StudySettings(n_cases=args.cases, n_readers=args.readers, synthetic_fraction=args.synthetic_fraction,
                             equal_conditions=args.equal_conditions, shared_order=args.shared_order,
                             views=tuple(args.views.split("+")), grid=_matrix(args.matrix) if args.matrix else None,
                             percentile=args.percentile, counts_per_view=args.counts_per_view, title=args.title)
    made = make_study_from_manifests(args.real, args.synthetic, args.out, settings, args.seed, passphrase,
                                     progress=tqdm)
    print(made.summary())
    return 0


def run_score(args) -> int:
    from reader_study.key import passphrase_from_env
    from reader_study.report import score_study

    result = score_study(args.key, args.responses, args.out, n_boot=args.n_boot, seed=args.seed,
                         passphrase=passphrase_from_env())
    print(result.summary())
    print(f"wrote {args.out}/report.md, results.json, reads.csv and figures")
    return 0


def run_simulate(args) -> int:
    from reader_study import simulate

    if abs(args.quality_shift) > 1.5:
        raise BadInputError(f"--quality-shift must be within +-1.5 (real scans average 3.5), got {args.quality_shift}")
    model_args = dict(accuracy=args.accuracy, reader_sd=args.reader_sd,
                      diagnostic_accuracy_real=args.diagnostic_accuracy,
                      diagnostic_accuracy_synthetic=args.diagnostic_accuracy,
                      quality_real=3.5, quality_synthetic=3.5 + args.quality_shift)
    simulate.ReaderModel(**model_args)   # checks the flags before the correlation search
    if args.plan == bool(args.key):
        raise BadInputError("give either --key (simulated responses) or --plan (study planning)")
    if args.plan:
        correlation = (simulate.correlation_for_kappa(args.kappa, args.accuracy) if args.kappa is not None
                       else args.correlation or 0.0)
        model = simulate.ReaderModel(correlation=correlation, **model_args)
        table = simulate.plan(_integers(args.cases), _integers(args.readers or "2,4,6"), model,
                              n_sim=args.n_sim, seed=args.seed)
        path = simulate.write_plan(table, args.out)
        print(f"latent correlation {correlation:.3f}\n{table.to_string(index=False, float_format='%.3f')}")
        print(f"wrote {path}")
        return 0
    from reader_study.key import passphrase_from_env, read_key

    key = read_key(args.key, passphrase_from_env())
    fraction = float(key.truth["synthetic"].mean())
    correlation = (simulate.correlation_for_kappa(args.kappa, args.accuracy, fraction) if args.kappa is not None
                   else args.correlation or 0.0)
    model = simulate.ReaderModel(correlation=correlation, **model_args)
    readers = None if args.readers is None else _integers(args.readers)
    if readers is not None and len(readers) != 1:
        raise BadInputError(f"--readers takes one number with --key (a list only with --plan), got {args.readers}")
    readers = None if readers is None else readers[0]
    paths = simulate.write_simulated_responses(key, model, readers, args.seed, args.out)
    print(f"wrote {len(paths)} simulated response file(s) to {args.out} (latent correlation {correlation:.3f})")
    return 0
