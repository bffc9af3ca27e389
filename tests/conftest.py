"""Shared fixtures: seeded generators, small scans, the DICOM validator."""

from __future__ import annotations

import os
import shutil

# Small tensors on 2 shared cores run far faster on one thread per process (also in subprocesses).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest

from factories import make_scan


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


@pytest.fixture
def scan_factory(rng):
    return lambda **kwargs: make_scan(rng, **kwargs)


@pytest.fixture(scope="session")
def dciodvfy():
    path = shutil.which("dciodvfy")
    if path is None:
        pytest.skip("dciodvfy (Debian dicom3tools) not installed")
    return path


@pytest.fixture(scope="session")
def toy_phantom_cohort(tmp_path_factory):
    """A small phantom archive (site elm-mdp, 512x128, 8 patients): manifest path; read-only for tests."""
    from synthscan.cli import main

    out = tmp_path_factory.mktemp("toy-phantom") / "elm"
    assert main(["phantom", "--site", "elm-mdp", "--n-patients", "8", "--out", str(out), "--seed", "11",
                 "--quiet"]) == 0
    return out / "manifest.csv"

