"""``synthscan sample``: synthetic scans of one condition from a trained (or the bundled) generator."""

from __future__ import annotations

from synthscan.errors import BadInputError


def register(subparsers):
    parser = subparsers.add_parser("sample", help="generate synthetic scans (DICOM/PNG + manifest) of one condition")
    parser.add_argument("--condition", required=True, help="normal, metastasis or amyloidosis")
    parser.add_argument("-n", type=int, required=True, help="number of scans")
    parser.add_argument("--out", required=True, help="output folder (reruns skip finished scans; manifest appended)")
    parser.add_argument("--model", help="model folder (a `synthscan train` run); default: the bundled model")
    parser.add_argument("--grade", type=int, help="amyloid grade 1-3 (default: 2 or 3 as in the training data)")
    parser.add_argument("--seed", type=int, default=0, help="scan i uses seed SEED + i (default 0)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, help="solver steps (default: the model's)")
    parser.add_argument("--guidance-scale", type=float,
                        help="classifier-free guidance (default: the model's, per condition)")
    parser.add_argument("--solver", choices=("dpmpp_2m", "heun"), help="default: the model's")
    parser.add_argument("--negative-condition", choices=("normal", "metastasis", "none"),
                        help="guide away from this condition (default: the model's per condition; none: off)")
    parser.add_argument("--negative-scale", type=float, help="weight of the negative condition (default: the model's)")
    parser.add_argument("--guidance-interval", help="noise levels LO,HI where guidance applies, e.g. 0.1,10; all: "
                        "every step (default: the model's)")
    parser.add_argument("--format", default="dicom", help="dicom, png or dicom,png (default dicom)")
    parser.add_argument("--matrix", help="clinical matrix ROWSxCOLS, e.g. 1024x256 or 512x128 (default: the model's)")
    parser.add_argument("--audit", help="audit index (synthscan audit --save-index: OUT/index): a scan flagged as a "
                        "near-copy of a training scan is re-drawn with fresh noise (recorded as audit_redraws)")
    parser.add_argument("--max-redraws", type=int, default=20, help="re-draws per scan before giving up "
                        "(default 20; then exit 2: the generator memorizes)")
    parser.add_argument("--workers", type=int, help="worker processes (default: one per CPU core, at most 8, with at "
                        "least four batches each; one with --device cuda; ignored under accelerate launch / torchrun)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N; with cuda, processes "
                        "(--workers, or accelerate launch / torchrun) take the GPUs in turn")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="network precision (default fp32; bf16 for GPUs: the same seed then gives a slightly "
                        "different scan)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from synthscan.preprocess import parse_matrix
    from synthscan.sample import SampleRequest, sample

    formats = tuple(part.strip().lower() for part in args.format.split(",") if part.strip())
    if not formats:
        raise BadInputError("--format is empty")
    request = SampleRequest(condition=args.condition, n=args.n, out=args.out, seed=args.seed, grade=args.grade,
                            batch_size=args.batch_size, steps=args.steps, guidance_scale=args.guidance_scale,
                            solver=args.solver, negative_condition=args.negative_condition,
                            negative_scale=args.negative_scale,
                            guidance_interval=_interval(args.guidance_interval), formats=formats,
                            matrix=parse_matrix(args.matrix) if args.matrix else None, audit=args.audit,
                            max_redraws=args.max_redraws, workers=args.workers, device=args.device,
                            precision=args.precision)
    result = sample(request, args.model, progress=not args.quiet)
    if result.is_main_process:
        print(result.summary())
    return 0


def _interval(text: str | None) -> tuple[float, float] | None:
    """``--guidance-interval``: "LO,HI" -> (LO, HI); "all" -> (0, inf); None -> None (the model's)."""
    if text is None:
        return None
    if text.strip().lower() == "all":
        return 0.0, float("inf")
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise BadInputError(f"--guidance-interval expects LO,HI (e.g. 0.1,10) or all, got {text!r}") from None
    return low, high
