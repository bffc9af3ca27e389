"""Shared fixtures: seeded generators, small scans and DICOM files, a toy cohort (built on demand)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from synthscan.scan import Scan


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


def make_scan(rng, rows=64, cols=16, views=("anterior", "posterior"), mean=5.0, spacing=(2.4, 2.4)) -> Scan:
    """A small scan of Poisson counts with a left-right asymmetry, so mirroring errors show."""
    base = np.full((len(views), rows, cols), mean)
    base[:, : rows // 4, : cols // 4] *= 6  # hot patch at the patient's right shoulder
    return Scan(rng.poisson(base).astype(np.float32), spacing, tuple(views))


@pytest.fixture
def scan_factory(rng):
    return lambda **kwargs: make_scan(rng, **kwargs)


@pytest.fixture(scope="session")
def dciodvfy():
    path = shutil.which("dciodvfy")
    if path is None:
        pytest.skip("dciodvfy (Debian dicom3tools) not installed")
    return path


def dciodvfy_errors(path) -> list[str]:
    """Error lines of dciodvfy for a file (it writes to stderr; its exit code is unreliable)."""
    import subprocess

    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
