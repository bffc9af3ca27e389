"""A tiny randomly initialised generator (a few thousand weights) and a toy cohort, for tests and smoke runs.

It has the full structure of a trained model (autoencoder, class-conditional EDM denoiser, count
statistics, sampler defaults) at a toy grid, so every code path of ``synthscan sample`` runs in
milliseconds. Its samples are noise shaped by random weights: they carry no information about any
condition, which is what the "randomly initialised model is judged at chance" test relies on.
"""

from __future__ import annotations

import numpy as np
import torch

from synthscan.config import TrainConfig, deep_update, merge, to_dict
from synthscan.model.pipeline import SynthscanModel

TINY_CONFIG = {
    "data": {"rows": 32, "cols": 8},
    "autoencoder": {"channels": [4, 8], "latent_channels": 2, "norm_groups": 2},
    "denoiser": {"channels": [8, 8], "norm_groups": 2, "attention": False},
    "train_autoencoder": {"steps": 8, "batch_size": 4, "warmup_steps": 2, "crop_rows": 16},
    "train_denoiser": {"steps": 8, "batch_size": 8, "warmup_steps": 2, "ema_decay": 0.9},
    "sampler": {"steps": 4},
    "checkpoint_every": 4,
}


def tiny_config(**overrides) -> TrainConfig:
    """The tiny config, with optional nested overrides (``{"sampler": {"steps": 2}}``)."""
    return merge(TrainConfig(), deep_update(TINY_CONFIG, overrides), "tiny config")


def tiny_model(seed: int = 0, views=("anterior", "posterior"), matrix=(64, 16), config: TrainConfig | None = None,
               total_counts: float = 2e4) -> SynthscanModel:
    """A randomly initialised model (tiny unless ``config`` says otherwise); scans come out at ``matrix`` with about
    ``total_counts`` counts."""
    config = config or tiny_config()
    torch.manual_seed(seed)
    autoencoder, denoiser = SynthscanModel.build_networks(
        len(views), (config.data.rows, config.data.cols), to_dict(config.autoencoder), to_dict(config.denoiser))
    latent_channels = config.autoencoder.latent_channels
    quantiles = np.linspace(0.5, 1.5, 101) * total_counts
    info = {
        "views": list(views), "grid": [config.data.rows, config.data.cols],
        "field_of_view_mm": [matrix[0] * 9.6, matrix[1] * 9.6], "matrix": list(matrix),
        "latent_mean": [0.0] * latent_channels, "latent_std": [1.0] * latent_channels,
        "total_counts": {"all": quantiles.round(1).tolist()},
        "class_counts": {"normal": 10, "metastasis": 10, "amyloidosis-g2": 3, "amyloidosis-g3": 7},
        "sampler": to_dict(config.sampler), "training": to_dict(config),
        "data": {"n_scans": 0, "sites": [], "tracers": ["DPD"], "manifest_sha256": ""},
    }
    return SynthscanModel(autoencoder.eval(), denoiser.eval(), info).eval().requires_grad_(False)


def toy_cohort(folder, n: int = 18, rows: int = 64, cols: int = 16, seed: int = 0):
    """Toy scans of three obvious classes written as DICOM + manifest; returns the manifest path.

    Every scan has a rectangular body; class 1 adds one hot 3x3 spot (metastasis), class 2 a warm blob in the
    left chest of the anterior view (amyloid grade 3). Counts are Poisson, scaled by a per-scan dose.
    """
    from pathlib import Path

    import pandas as pd

    from synthscan.io.dicom import write_scan
    from synthscan.io.manifest import write_manifest
    from synthscan.scan import Scan

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        kind = i % 3
        expected = np.full((2, rows, cols), 0.2)
        expected[:, 4:rows - 4, 4:cols - 4] += 8.0
        if kind == 1:
            r, c = rng.integers(8, rows - 8), rng.integers(5, cols - 5)
            expected[:, r - 1:r + 2, c - 1:c + 2] += 60
        if kind == 2:
            expected[0, rows // 4: rows // 4 + 6, cols // 2: cols // 2 + 5] += 40
        scan = Scan(rng.poisson(expected * rng.uniform(0.7, 1.3)).astype(np.float32), (9.6, 9.6))
        write_scan(folder / f"s{i:03d}.dcm", scan, {"patient_id": f"P{i:03d}"})
        records.append(dict(study_id=f"S{i:03d}", patient_id=f"P{i:03d}", site="toy", tracer="DPD",
                            path=f"s{i:03d}.dcm", views="anterior+posterior", rows=rows, cols=cols,
                            pixel_spacing_mm=9.6, total_counts=scan.total_counts, metastasis=int(kind == 1),
                            amyloid_grade=3 if kind == 2 else 0))
    return write_manifest(pd.DataFrame(records), folder / "manifest.csv")
