"""Positive control for the whole pipeline: a generator deliberately overfit on 32 scans must be caught.

``synthscan train`` (a small latent diffusion model, trained far too long on 32 toy scans), ``synthscan sample``
and ``synthscan audit --model`` end to end. Several minutes on 2 CPU cores: run with ``pytest -m slow``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from synthscan.cli import main
from synthscan.io.dicom import write_scan
from synthscan.io.manifest import write_manifest

_spec = importlib.util.spec_from_file_location(
    "privacy_phantom", Path(__file__).parents[1] / "unit" / "test_privacy_phantom.py")
phantom = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(phantom)

# 2000 passes over 32 scans, no condition dropout, no EMA, no latent noise: memorization on purpose.
OVERFIT_RECIPE = """
seed = 0
checkpoint_every = 100000
[data]
rows = 64
cols = 16
[autoencoder]
channels = [16, 32]
latent_channels = 4
latent_noise = 0.0
[denoiser]
channels = [32, 64]
attention = false
condition_dropout = 0.0
[train_autoencoder]
steps = 600
batch_size = 16
lr = 3e-3
warmup_steps = 20
crop_rows = 0
ema_decay = 0.0
[train_denoiser]
steps = 2000
batch_size = 32
lr = 3e-3
warmup_steps = 20
ema_decay = 0.0
[sampler]
steps = 20
"""


def write_set(folder: Path, scans, prefix: str) -> Path:
    folder.mkdir(parents=True)
    rows = []
    for i, scan in enumerate(scans):
        write_scan(folder / f"{prefix}{i:03d}.dcm", scan)
        rows.append({"study_id": f"{prefix}-{i:03d}", "patient_id": f"{prefix}-pt{i:03d}", "path": f"{prefix}{i:03d}.dcm",
                     "views": "anterior+posterior", "metastasis": 0, "amyloid_grade": 0,
                     "total_counts": scan.total_counts})
    return write_manifest(pd.DataFrame(rows), folder / "manifest.csv")


@pytest.mark.slow
def test_generator_overfit_on_32_scans_is_caught(tmp_path):
    train = write_set(tmp_path / "train", phantom.cohort(32, seed=51), "tr")
    holdout = write_set(tmp_path / "holdout", phantom.cohort(32, seed=52), "ho")
    recipe = tmp_path / "overfit.toml"
    recipe.write_text(OVERFIT_RECIPE)
    run = tmp_path / "run"
    assert main(["train", "--recipe", str(recipe), "--data", str(train), "--out", str(run), "--quiet"]) == 0
    synth = tmp_path / "synth"
    assert main(["sample", "--condition", "normal", "-n", "48", "--out", str(synth), "--model", str(run),
                 "--matrix", "512x128", "--quiet"]) == 0
    out = tmp_path / "audit"
    assert main(["audit", "--samples", str(synth / "manifest.csv"), "--train", str(train), "--holdout", str(holdout),
                 "--model", str(run), "--grid", "64x16", "--out", str(out)]) == 0

    report = json.loads((out / "audit.json").read_text())
    assert report["memorization_detected"]
    attacks = {a["attack"]: a for a in report["membership"]}
    loss = attacks["denoising-loss"]
    assert loss["estimate"] >= 0.9 and loss["ci_low"] > 0.5
    significant = {t["test"] for t in report["tests"] if t["significant"]}
    assert "membership denoising-loss" in significant
    # The samples themselves: closer to the training scans than new patients are in the encoder's space, and
    # many are near-copies by the memorization ratio there (blurred renditions of one training scan each).
    assert {"data-copying (features)", "near-copies (features ratio)"} <= significant
    assert len(report["flagged_pairs"]) >= 10 and (out / report["flagged_pairs"][0]["file"]).is_file()
