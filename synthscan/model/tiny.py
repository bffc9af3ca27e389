"""A tiny randomly initialised generator (a few thousand weights) for tests and smoke runs.

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
    """A random tiny model; scans come out at ``matrix`` with about ``total_counts`` counts."""
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
