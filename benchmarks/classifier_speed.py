"""Wall time of a CPU-default classifier run (``classify train`` defaults) on 1,000 scans.

Target (issue 5): <= 5 min on the 2-core CPU, DICOM reading and preprocessing included.

    python benchmarks/classifier_speed.py                          # 1,000 toy scans at 1024x256
    python benchmarks/classifier_speed.py --toy-folder /tmp/toy1000   # keep the toy scans for reruns
    python benchmarks/classifier_speed.py --manifest cohort/manifest.csv   # e.g. a phantom cohort

Prints one JSON object: phases in seconds of wall and CPU time (first read of the DICOM files into the grid
cache, training with validation), steps, the machine's CPU count and load average (other work on a shared
machine inflates wall time; CPU time divided by the threads bounds the wall time of an idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def toy_cohort(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` scans of 1024x256 (2.4 mm) with Poisson noise and bright spots in 20% of them."""
    from synthscan.io.dicom import write_scan
    from synthscan.io.manifest import write_manifest
    from synthscan.scan import Scan

    rng = np.random.default_rng(seed)
    rows, cols = 1024, 256
    yy, xx = np.mgrid[0:rows, 0:cols]
    body = ((np.abs(xx - cols / 2) < 70) & (yy > 60) & (yy < 980)).astype(float)
    patch = np.mgrid[-12:13, -12:13]
    spot = 60 * np.exp(-(patch[0] ** 2 + patch[1] ** 2) / (2 * 4.0 ** 2))
    records = []
    for i in range(n):
        mean = rng.uniform(4, 10) * body
        positive = rng.random() < 0.2
        for _ in range(int(rng.integers(1, 6)) if positive else 0):
            r, c = int(rng.integers(150, 700)), int(rng.integers(80, 176))
            mean[r - 12: r + 13, c - 12: c + 13] += spot
        if i % 100 == 0:
            print(f"writing toy scan {i}/{n}", file=sys.stderr, flush=True)
        counts = np.stack([rng.poisson(mean), rng.poisson(mean)]).astype(np.float32)
        write_scan(folder / f"s{i:05d}.dcm", Scan(counts, (2.4, 2.4)))
        records.append({"study_id": f"s{i:05d}", "patient_id": f"p{i:05d}", "site": "bench", "path": f"s{i:05d}.dcm",
                        "views": "anterior+posterior", "metastasis": int(positive), "amyloid_grade": 0})
    return write_manifest(pd.DataFrame(records), folder / "manifest.csv")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", help="cohort manifest (default: write 1,000 toy scans to a temp folder)")
    parser.add_argument("--toy-folder", help="write the toy cohort here once and reuse it on later runs")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--task", default="metastasis")
    args = parser.parse_args(argv)

    import torch

    from evaluation.classifier import ClassifierConfig
    from evaluation.training import train_run
    from synthscan.io.manifest import read_manifest

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        started = time.perf_counter()
        if args.manifest:
            manifest = Path(args.manifest)
        elif args.toy_folder and (Path(args.toy_folder) / "manifest.csv").is_file():
            manifest = Path(args.toy_folder) / "manifest.csv"
        else:
            folder = Path(args.toy_folder) if args.toy_folder else scratch
            folder.mkdir(parents=True, exist_ok=True)
            manifest = toy_cohort(folder, args.n)
        made = time.perf_counter() - started
        frame = read_manifest(manifest).head(args.n)
        config = ClassifierConfig(task=args.task, arch=args.arch, steps=args.steps, seed=0, arm="benchmark")
        print("reading and preprocessing", file=sys.stderr, flush=True)
        started, cpu = time.perf_counter(), time.process_time()
        from evaluation.data import load_grid_scans, split_train_val

        train, val = split_train_val(frame, config.task, config.seed)
        load_grid_scans(train, config.preprocess, scratch / "cache", progress=False)
        load_grid_scans(val, config.preprocess, scratch / "cache", progress=False)
        reading, reading_cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"read in {reading:.0f} s; training", file=sys.stderr, flush=True)
        started, cpu = time.perf_counter(), time.process_time()
        summary = train_run(config, train, val, scratch / "run", scratch / "cache", progress=True)
        training, training_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({
        "scans": len(frame), "arch": args.arch, "grid": list(config.grid), "batch_size": config.batch_size,
        "steps_run": summary["steps_run"], "cohort_written_s": round(made, 1) if not args.manifest else None,
        "read_and_preprocess_s": round(reading, 1), "train_and_validate_s": round(training, 1),
        "total_s": round(reading + training, 1), "read_cpu_s": round(reading_cpu, 1),
        "train_cpu_s": round(training_cpu, 1), "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": sys.version.split()[0],
        "torch": torch.__version__}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
