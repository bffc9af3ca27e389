"""Speed of the AUC statistics against the targets of issue 5 (2-core CPU).

    python benchmarks/metrics_speed.py [--n 10000] [--resamples 2000] [--repeats 5]

Targets: DeLong AUC + CI on 10,000 scans < 1 s; 2,000 stratified bootstrap resamples on 10,000 scans < 2 s;
also times the paired DeLong test. Prints the best and the median of ``--repeats`` runs, and the machine
load, because timings on a shared machine vary with what else runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from evaluation import metrics


def timed(function, repeats: int) -> tuple[float, float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return min(seconds), float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    labels = (rng.random(args.n) < 0.3).astype(int)
    scores = rng.normal(size=args.n) + labels
    other = scores + rng.normal(scale=0.8, size=args.n)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; n = {args.n}, {labels.sum()} positive")
    cases = [
        ("DeLong AUC + 95% CI", 1.0, lambda: metrics.delong_auc(labels, scores)),
        ("paired DeLong test", 1.0, lambda: metrics.delong_test(labels, scores, other)),
        (f"bootstrap, {args.resamples} resamples", 2.0,
         lambda: metrics.bootstrap_auc(labels, scores, args.resamples, seed=1)),
    ]
    for name, target, function in cases:
        best, median = timed(function, args.repeats)
        verdict = "ok" if best < target else "SLOWER than target"
        print(f"{name:32s} best {best:7.3f} s  median {median:7.3f} s  (target < {target:g} s: {verdict})")
    print(metrics.delong_auc(labels, scores).summary())
    print(metrics.bootstrap_auc(labels, scores, args.resamples, seed=1).summary())


if __name__ == "__main__":
    main()
