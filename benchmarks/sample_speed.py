"""Sampling speed: ``synthscan sample -n N`` with a model versus a stock diffusers pixel-space pipeline.

Measured in one run on one machine (issue 4, "Speed and memory"):
1. ``synthscan sample --condition metastasis -n N`` with the default model (or ``--model``), DICOM written:
   wall time, scans per second, peak memory of the whole process tree (the CLI and the worker processes it
   spawns, sampled every 0.5 s) as the sum of proportional set sizes (PSS: shared library pages counted
   once, split between the processes that map them), and the peak resident set of its largest process
   (``ru_maxrss``).
2. A stock diffusers pipeline: ``UNet2DModel`` with class embeddings and about the same number of
   parameters as the whole synthscan model (autoencoder + denoiser), in pixel space at the canonical grid the
   networks generate (2x256x64) and, for reference, at the clinical output matrix (2x1024x256), sampled with
   ``DPMSolverMultistepScheduler`` in 20 steps with classifier-free guidance (conditional + null in one
   batch). A few images are timed and the time per image extrapolated (no files written).

With ``--device cuda --precision bf16`` both run on the GPU in bfloat16. ``--paper`` times a randomly
initialised model of ``recipes/paper.toml`` (2x512x128, latent 8x64x16; speed does not depend on the weights)
instead of a trained one: the GPU target of issue 4 (>= 40 scans/s on one H100) is

    python benchmarks/sample_speed.py --paper --device cuda --precision bf16 --n 2000 --skip-clinical --workers 4

Usage: ``python benchmarks/sample_speed.py [--n 5000] [--model DIR | --paper] [--device cpu|cuda]
[--precision fp32|bf16] [--workers N] [--out /tmp/bench] [--stock-images 4]``.
Prints a Markdown block for benchmarks/RESULTS.md and writes ``OUT/sample_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def time_synthscan(n: int, model: str | None, out: Path, batch_size: int, device: str = "cpu",
                   precision: str = "fp32", workers: int | None = None) -> dict:
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "synthscan", "sample", "--condition", "metastasis", "-n", str(n), "--out",
               str(out), "--quiet", "--batch-size", str(batch_size), "--device", device, "--precision", precision]
    if model:
        command += ["--model", model]
    if workers:
        command += ["--workers", str(workers)]
    began = time.perf_counter()
    process = subprocess.Popen(command)
    peak_tree = 0
    while process.poll() is None:
        peak_tree = max(peak_tree, _tree_pss(process.pid))
        time.sleep(0.5)
    seconds = time.perf_counter() - began
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    files = list(out.rglob("*.dcm"))
    return {"n": n, "files": len(files), "seconds": round(seconds, 1), "scans_per_second": round(n / seconds, 2),
            "seconds_per_scan": seconds / n, "peak_rss_mib": round(peak_kib / 1024, 1),
            "peak_tree_pss_mib": round(peak_tree / 2**20, 1),
            "bytes_written": sum(f.stat().st_size for f in files)}


def _tree_pss(pid: int) -> int:
    """Proportional set size (bytes) of process ``pid`` and all its descendants (0 once it has ended)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def stock_unet(parameters: int, views: int, shape):
    """A diffusers UNet2DModel with class embeddings whose size is closest to ``parameters``."""
    from diffusers import UNet2DModel

    best = None
    for width in (16, 24, 32, 40, 48, 56, 64, 96, 128, 160):
        channels = (width, width * 2, width * 2, width * 4)
        unet = UNet2DModel(sample_size=tuple(shape), in_channels=views, out_channels=views, block_out_channels=channels,
                           layers_per_block=1, norm_num_groups=8, num_class_embeds=6,
                           down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"))
        size = sum(p.numel() for p in unet.parameters())
        if best is None or abs(size - parameters) < abs(best[1] - parameters):
            best = (unet, size)
    return best


def time_stock(parameters: int, views: int, shape, images: int, steps: int = 20, guidance_scale: float = 2.0,
               device: str = "cpu", precision: str = "fp32") -> dict:
    import contextlib

    import torch
    from diffusers import DPMSolverMultistepScheduler

    unet, size = stock_unet(parameters, views, shape)
    unet.eval().to(device)
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(steps)
    x = torch.randn(images, views, *shape, generator=torch.Generator().manual_seed(0)).to(device)
    labels = torch.cat([torch.full((images,), 2), torch.zeros(images, dtype=torch.long)]).to(device)
    autocast = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        unet(torch.cat([x, x]), scheduler.timesteps[0], class_labels=labels)  # warm-up (CUDA kernels, allocator)
    began = time.perf_counter()
    with torch.inference_mode(), autocast:
        for t in scheduler.timesteps:
            both = unet(torch.cat([x, x]), t, class_labels=labels).sample.float()
            conditional, unconditional = both.chunk(2)
            x = scheduler.step(unconditional + guidance_scale * (conditional - unconditional), t, x).prev_sample
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    return {"shape": [views, *shape], "parameters": size, "images_timed": images, "steps": steps,
            "guidance": "CFG (2 passes/step)", "seconds_per_image": seconds / images}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--model", help="model folder (default: the bundled model)")
    parser.add_argument("--out", default="/tmp/synthscan-bench")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stock-images", type=int, default=2, help="images timed with the stock pipeline")
    parser.add_argument("--skip-clinical", action="store_true", help="skip the stock pipeline at 2x1024x256")
    parser.add_argument("--paper", action="store_true", help="a random model of recipes/paper.toml instead")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both pipelines)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--workers", type=int, help="synthscan sample --workers (default: its own)")
    args = parser.parse_args(argv)

    import torch

    from synthscan.model.pipeline import SynthscanModel
    from synthscan.sample import DEFAULT_MODEL

    out = Path(args.out)
    model_dir = args.model
    if args.paper:
        model_dir = str(_paper_model(out / "paper-model"))
    model = SynthscanModel.from_pretrained(model_dir or DEFAULT_MODEL)
    parameters = sum(p.numel() for p in model.parameters())
    views, grid, matrix = len(model.views), model.info["grid"], model.info["matrix"]
    ours = time_synthscan(args.n, model_dir, out / "samples", args.batch_size, args.device, args.precision,
                          args.workers)
    settings = dict(device=args.device, precision=args.precision)
    stock = {"canonical": time_stock(parameters, views, grid, args.stock_images, **settings)}
    if not args.skip_clinical:
        stock["clinical"] = time_stock(parameters, views, matrix, max(1, args.stock_images // 2), **settings)
    for entry in stock.values():
        entry["speedup"] = round(entry["seconds_per_image"] / ours["seconds_per_scan"], 1)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
              + (f", {torch.cuda.get_device_name(args.device)}, {args.precision}" if args.device != "cpu" else ""),
              "load_average_1min_before_after": os.getloadavg()[0], "model_hash": model.hash,
              "model_parameters": parameters, "synthscan": ours, "stock": stock}
    (out / "sample_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"## sample speed ({result['date']}, {result['machine']})\n")
    print(f"- `synthscan sample --condition metastasis -n {args.n}` (model {model.hash[:8]}, {parameters:,} parameters, "
          f"DICOM {matrix[0]}x{matrix[1]}): {ours['seconds']:.0f} s, {ours['scans_per_second']:.1f} scans/s, "
          f"peak memory {ours['peak_tree_pss_mib']:.0f} MiB PSS in all processes (RSS of the largest: "
          f"{ours['peak_rss_mib']:.0f} MiB), "
          f"{ours['bytes_written'] / 1e9:.2f} GB written")
    for name, entry in stock.items():
        print(f"- stock diffusers UNet2DModel ({entry['parameters']:,} parameters) at {'x'.join(map(str, entry['shape']))}, "
              f"DPMSolverMultistep {entry['steps']} steps + CFG: {entry['seconds_per_image']:.2f} s/image "
              f"({entry['images_timed']} timed) -> synthscan is {entry['speedup']}x faster per image")
    return 0


def _paper_model(folder: Path) -> Path:
    """A randomly initialised generator with the networks, grid and sampler of recipes/paper.toml."""
    from synthscan.config import load_config
    from synthscan.model.tiny import tiny_model

    config = load_config(Path(__file__).parents[1] / "recipes" / "paper.toml")
    return tiny_model(config=config, matrix=(1024, 256), total_counts=6.7e6).save_pretrained(folder)


if __name__ == "__main__":
    sys.exit(main())
