"""Plain test helpers (importable as ``factories``; fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess

import numpy as np

from synthscan.scan import Scan


def make_scan(rng, rows=64, cols=16, views=("anterior", "posterior"), mean=5.0, spacing=(2.4, 2.4)) -> Scan:
    """A small scan of Poisson counts with a left-right asymmetry, so mirroring errors show."""
    base = np.full((len(views), rows, cols), mean)
    base[:, : rows // 4, : cols // 4] *= 6  # hot patch at the patient's right shoulder
    return Scan(rng.poisson(base).astype(np.float32), spacing, tuple(views))


def dciodvfy_errors(path) -> list[str]:
    """Error lines of dciodvfy for a file (it writes to stderr; its exit code is unreliable)."""
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
