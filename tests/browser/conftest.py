"""Browser tests: a real headless Debian Chromium driven by Playwright; skipped when either is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from synthscan.scan import Scan

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium not installed ({CHROMIUM})")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium") or str(CHROMIUM),
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def bone_scan():
    return toy_bone_scan


def toy_bone_scan(rng: np.random.Generator, rows=256, cols=64, counts_per_view=400_000, lesions=0,
                  heart=0.0) -> Scan:
    """A cartoon whole-body bone scan (skull, spine, ribs, pelvis, limbs, kidneys, bladder) for the viewer."""
    y, x = np.mgrid[0:rows, 0:cols] / np.array([rows, cols])[:, None, None]

    def blob(cy, cx, ry, rx, value):
        return value * (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1)

    body = 0.08 * (np.abs(x - 0.5) < 0.2 + 0.1 * (y > 0.55)) * (y > 0.1)
    skeleton = blob(0.055, 0.5, 0.05, 0.13, 1.0) + 1.2 * ((np.abs(x - 0.5) < 0.025) & (y > 0.11) & (y < 0.5))
    for k in range(10):                                     # ribs: arcs either side of the spine
        arc = 0.15 + 0.025 * k + 0.05 * (x - 0.5) ** 2 / 0.04
        skeleton += 0.6 * ((np.abs(y - arc) < 0.006) & (np.abs(x - 0.5) > 0.03) & (np.abs(x - 0.5) < 0.2))
    skeleton += blob(0.52, 0.38, 0.045, 0.12, 0.9) + blob(0.52, 0.62, 0.045, 0.12, 0.9)
    for side in (0.38, 0.62):                               # femora and tibiae, arms
        skeleton += 0.8 * ((np.abs(x - side - 0.04 * (side - 0.5)) < 0.025) & (y > 0.56) & (y < 0.97))
        skeleton += 0.5 * ((np.abs(x - (0.5 + 1.4 * (side - 0.5))) < 0.018) & (y > 0.14) & (y < 0.5))
    organs = blob(0.56, 0.5, 0.02, 0.08, 3.0) + blob(0.33, 0.42, 0.03, 0.05, 0.4) + blob(0.33, 0.58, 0.03, 0.05, 0.4)
    organs += blob(0.22, 0.55, 0.04, 0.12, heart)
    for _ in range(lesions):
        skeleton += blob(rng.uniform(0.15, 0.5), 0.5 + rng.uniform(-0.15, 0.15), 0.008, 0.03, 3.0)
    anterior = body + skeleton + organs
    posterior = body + skeleton * (1 + 0.6 * (np.abs(x - 0.5) < 0.03)) + 0.7 * organs
    views = np.stack([anterior, posterior])
    views *= counts_per_view / views.sum(axis=(1, 2), keepdims=True)
    return Scan(rng.poisson(views).astype(np.float32), (2400 / rows, 2400 / rows))
