"""Shared fixtures: seeded generators, small scans, the DICOM validator."""

from __future__ import annotations

import shutil

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
