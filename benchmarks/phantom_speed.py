"""Speed of ``synthscan phantom``: studies per second at 2x1024x256, DICOM writing included.

    python benchmarks/phantom_speed.py [--site aurora-dpd] [--n-patients 80] [--workers 1 2]

Runs the full archive writer (rendering with depth-dependent blur and Poisson noise, DICOM files, manifest,
ground truth) into a temporary folder, once per worker count. Besides wall-clock studies/s it reports the CPU
time per study (all processes), so that a run on a busy shared machine can be judged: on an idle machine with
``c`` cores the throughput approaches ``min(workers, c) * 1000 / cpu_ms_per_study``. The load average
before and after is printed because other users' jobs share the cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv=None) -> None:
    from synthscan.phantom.cohort import write_cohort
    from synthscan.phantom.sites import get_site

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="aurora-dpd")
    parser.add_argument("--n-patients", type=int, default=80)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    site = get_site(args.site)
    write_cohort(site, 2, Path(tempfile.mkdtemp()) / "warm", args.seed, 1, progress=False)  # imports, caches
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average before {os.getloadavg()[0]:.2f}")
    print(f"site {site.name}: {site.shape[0]}x{site.shape[1]} x 2 views, {args.n_patients} patients")
    for workers in args.workers:
        folder = Path(tempfile.mkdtemp(prefix="phantom-speed-"))
        try:
            cpu, wall = _cpu_seconds(), time.perf_counter()
            summary = write_cohort(site, args.n_patients, folder / "out", args.seed, workers, progress=False)
            wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        studies = summary["studies"]
        print(f"workers {workers}: {studies} studies in {wall:.1f} s = {studies / wall:.1f} studies/s "
              f"(CPU {1000 * cpu / studies:.0f} ms/study; idle-machine estimate "
              f"{min(workers, os.cpu_count() or 1) * studies / cpu:.1f} studies/s); "
              f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
