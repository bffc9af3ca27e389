"""``synthscan phantom``: write a simulated hospital archive (DICOM + manifest + ground truth) for one site."""

from __future__ import annotations

from synthscan.errors import BadInputError


def register(subparsers):
    parser = subparsers.add_parser("phantom", help="simulate a site's whole-body bone scan archive (seeded)")
    parser.add_argument("--site", help="site name (see --list-sites)")
    parser.add_argument("--n-patients", type=int, help="number of patients (some have repeat studies)")
    parser.add_argument("--out", help="output folder (must not exist, or hold this exact run)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default 0); same seed, same bytes")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--list-sites", action="store_true", help="print the sites and their settings, then exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from synthscan.phantom.cohort import write_cohort
    from synthscan.phantom.sites import describe_sites, get_site

    if args.list_sites:
        print(describe_sites())
        return 0
    missing = [flag for flag, value in (("--site", args.site), ("--n-patients", args.n_patients),
                                        ("--out", args.out)) if value is None]
    if missing:
        raise BadInputError(f"phantom needs {', '.join(missing)} (or --list-sites)")
    site = get_site(args.site)
    if args.n_patients < 1:
        raise BadInputError(f"--n-patients must be >= 1, got {args.n_patients}")
    if args.seed < 0:
        raise BadInputError(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 1:
        raise BadInputError(f"--workers must be >= 1, got {args.workers}")
    summary = write_cohort(site, args.n_patients, args.out, args.seed, args.workers, progress=not args.quiet)
    if summary["existing"]:
        print(f"{args.out} already holds this run (site {site.name}, {args.n_patients} patients, seed {args.seed}); "
              "nothing to do")
    else:
        print(f"wrote {args.out}: {summary['studies']} studies of {summary['patients']} patients "
              f"({summary['metastasis']} metastatic, {summary['amyloid_2plus']} amyloid grade >= 2), "
              "manifest.csv, ground_truth.json, lesions.json")
    return 0
