"""``synthscan train``: train the generator (autoencoder + latent diffusion) on a manifest; rerun to resume."""

from __future__ import annotations

from pathlib import Path


def register(subparsers):
    parser = subparsers.add_parser(
        "train", help="train the class-conditional generator on a manifest (rerun the same command to resume)")
    parser.add_argument("--data", required=True, help="training manifest.csv (needs metastasis and amyloid_grade)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, and the final model)")
    parser.add_argument("--recipe", help="recipe TOML, e.g. recipes/default-cpu.toml (default: built-in defaults)")
    parser.add_argument("--config", help="a second TOML applied over the recipe")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train_denoiser.steps=500 (repeatable)")
    parser.add_argument("--seed", type=int, help="shorthand for --set seed=N")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from synthscan.config import load_config, parse_set
    from synthscan.train import train

    overrides = parse_set(args.set)
    if args.seed is not None:
        overrides["seed"] = args.seed
    config = load_config(args.recipe, args.config, overrides)
    folder = train(Path(args.data), Path(args.out), config, progress=not args.quiet)
    if folder is not None:  # main process only
        print(f"model in {folder} (config.json, model.safetensors); losses in {folder / 'loss.png'}")
    return 0
