"""``synthscan classify train|test``: downstream classifiers of bone scans (evaluation/classifier.py)."""

from __future__ import annotations

from synthscan.errors import BadInputError

TASKS = ("metastasis", "amyloidosis", "amyloid_grade")
ARCHS = ("resnet18", "resnet50", "densenet121", "vgg11_bn", "vgg16_bn", "tiny")
STRATEGIES = ("original", "class-weight", "augment-positives", "augment-all", "conventional")


def _grid(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise BadInputError(f"--grid must look like 256x64, got {text!r}") from None
    return rows, cols


def register(subparsers):
    parser = subparsers.add_parser("classify", help="train and test downstream classifiers")
    verbs = parser.add_subparsers(dest="classify_command", required=True, metavar="{train,test}")
    train = verbs.add_parser(
        "train", help="train a classifier run (resumes if --out holds an unfinished run)",
        description="Settings: defaults < --config TOML (keys of evaluation.classifier.ClassifierConfig) < flags. "
                    "The resolved config is saved as RUN/config.json, in the weights and in every checkpoint.")
    train.add_argument("--train", required=True, help="training manifest (real, or mixed with synthetic rows)")
    train.add_argument("--val", help="validation manifest (real scans); default: a patient-grouped split of --train")
    train.add_argument("--config", help="TOML file of classifier settings (flags override it)")
    # None = not given: the value comes from --config, else from the ClassifierConfig default shown.
    train.add_argument("--task", choices=TASKS, help="default metastasis")
    train.add_argument("--arch", choices=ARCHS, help="default resnet18")
    train.add_argument("--fusion", choices=("channels", "views"),
                       help="views as input channels of one backbone (default) or one shared backbone per view")
    train.add_argument("--views", choices=("anterior+posterior", "anterior", "posterior"),
                       help="default: the manifest's views")
    train.add_argument("--region", choices=("whole", "thorax", "heart"), help="default whole")
    train.add_argument("--grid", type=_grid, help="rows x cols per view (default 256x64 whole body, 96x96 thorax, "
                                                  "64x64 heart)")
    train.add_argument("--strategy", choices=STRATEGIES, help="default original")
    train.add_argument("--seed", type=int, help="default 0")
    train.add_argument("--arm", help="arm name in predictions (default: real-/mixed- plus the strategy)")
    train.add_argument("--budget", choices=("steps", "epochs"),
                       help="equal optimizer steps across arms (default) or equal epochs")
    train.add_argument("--steps", type=int, help="optimizer steps (default 250)")
    train.add_argument("--epochs", type=int, help="passes over the training set with --budget epochs (default 10)")
    train.add_argument("--batch-size", type=int, help="default 32")
    train.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-3)")
    train.add_argument("--eval-every", type=int, help="steps between validation scores (default 25)")
    train.add_argument("--patience", type=int, help="evaluations without improvement before stopping (default 6)")
    train.add_argument("--folds", type=int, help="k-fold cross-validation by patient, k models (default 1: none)")
    train.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--cache", help="folder for preprocessed grid counts (default ~/.cache/synthscan)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--out", required=True, help="run folder")
    train.set_defaults(func=run_train)

    test = verbs.add_parser("test", help="predict test manifests with a trained run; predictions.csv + summary")
    test.add_argument("--model", required=True, help="run folder written by classify train")
    test.add_argument("--test", required=True, nargs="+", help="test manifest(s), e.g. one per site")
    test.add_argument("--task", choices=TASKS, help="refuse the model unless it was trained for this task")
    test.add_argument("--no-hcl", action="store_true", help="skip the H/CL ratio baseline (amyloidosis tasks)")
    test.add_argument("--device", default="cpu")
    test.add_argument("--cache", help="folder for preprocessed grid counts")
    test.add_argument("--quiet", action="store_true")
    test.add_argument("--out", required=True, help="folder for predictions.csv and summary.md")
    test.set_defaults(func=run_test)


FLAGS = ("task", "arch", "fusion", "region", "grid", "strategy", "seed", "arm", "budget", "steps", "epochs",
         "batch_size", "lr", "eval_every", "patience", "folds")


def settings(args) -> dict:
    """Config values: --config TOML first, then every flag that was given."""
    from synthscan.config import read_toml

    values = read_toml(args.config) if args.config else {}
    values.update({name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None})
    if args.views:
        values["views"] = args.views
    return values


def run_train(args) -> int:
    import torch

    from evaluation.classifier import ClassifierConfig, default_grid
    from evaluation.data import is_synthetic, manifest_views, refuse_overlap, refuse_synthetic, task_labels
    from evaluation.training import train_run
    from synthscan.io.manifest import read_manifest
    from synthscan.scan import VIEW_SETS

    if args.threads:
        torch.set_num_threads(args.threads)
    values = settings(args)
    unknown = sorted(set(values) - set(ClassifierConfig.__dataclass_fields__))
    if unknown:
        raise BadInputError(f"unknown config key(s) {unknown}", args.config)
    task = values.setdefault("task", "metastasis")
    train = read_manifest(args.train)
    task_labels(train, task, args.train)
    val = None
    if args.val:
        val = read_manifest(args.val)
        refuse_synthetic(val, args.val, "validation")
        refuse_overlap(train["patient_id"], val, args.val, "validation")
        task_labels(val, task, args.val)
    views = values.get("views")
    values["views"] = VIEW_SETS[views] if isinstance(views, str) and views in VIEW_SETS else \
        (tuple(views) if views else manifest_views(train, args.train))
    values.setdefault("grid", default_grid(values.get("region", "whole")))
    values.setdefault("arm", f"{'mixed' if is_synthetic(train).any() else 'real'}-{values.get('strategy', 'original')}")
    try:
        config = ClassifierConfig(**values)
    except TypeError as error:  # a TOML value of the wrong kind
        raise BadInputError(f"bad config value ({error})", args.config) from None
    summary = train_run(config, train, val, args.out, args.cache, args.device, not args.quiet)
    for fold, part in enumerate(summary.get("folds", [summary]), start=1):
        prefix = f"fold {fold}: " if "folds" in summary else ""
        print(prefix + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in part.items()))
    print(f"wrote {args.out} (task {config.task}, arm {config.arm}, seed {config.seed})")
    return 0


def run_test(args) -> int:
    from pathlib import Path

    import pandas as pd

    from evaluation.compare import write_test_summary
    from evaluation.hcl import hcl_predictions
    from evaluation.predict import predict_manifests, read_config, site_frame, validation_threshold
    from synthscan.io.atomic import atomic_path

    predictions = predict_manifests(args.model, args.test, args.task, args.cache, args.device, not args.quiet)
    threshold = validation_threshold(args.model)
    if threshold is not None:  # the validation operating point travels with the scores (synthscan survival)
        predictions["threshold"] = threshold.value
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False, float_format="%.6g")
    baseline = None
    if read_config(args.model).task in ("amyloidosis", "amyloid_grade") and not args.no_hcl:
        baseline = pd.concat([hcl_predictions(site_frame(path), not args.quiet) for path in args.test],
                             ignore_index=True)
        with atomic_path(out / "hcl_predictions.csv") as tmp:
            baseline.to_csv(tmp, index=False, float_format="%.6g")
    print(write_test_summary(predictions, out, baseline=baseline, threshold=threshold))
    print(f"wrote {out / 'predictions.csv'} and {out / 'summary.md'}")
    return 0
