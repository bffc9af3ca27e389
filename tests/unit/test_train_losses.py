"""Pieces of the perceptual fine-tuning stage (synthscan/train.py): count-noise level and the perceptual loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthscan.config import TrainConfig, merge
from synthscan.model.autoencoder import Autoencoder
from synthscan.model.critic import ScanClassifier
from synthscan.preprocess import to_network
from synthscan.train import AutoencoderForTraining, autoencoder_loss, noise_sd


@pytest.mark.parametrize("mean_counts", [30.0, 300.0])
def test_noise_sd_is_the_spread_poisson_counts_give_network_intensities(mean_counts):
    rng = np.random.default_rng(0)
    pattern = rng.uniform(0.5, 1.5, (1, 2, 32, 8))
    expected = pattern / pattern.mean() * mean_counts
    draws = rng.poisson(np.repeat(expected, 400, axis=0)).astype(np.float32)
    spread = to_network(draws).std(dim=0).mean()  # per pixel over draws, averaged over pixels
    assert float(spread) == pytest.approx(float(noise_sd(torch.from_numpy(draws)).mean()), rel=0.05)


def _setup(weight):
    torch.manual_seed(0)
    config = merge(TrainConfig(), {"perceptual": {"weight": weight}, "autoencoder": {"channels": [4, 8],
                                                                                       "norm_groups": 2}})
    autoencoder = AutoencoderForTraining(Autoencoder(2, (4, 8), config.autoencoder.latent_channels, 2))
    images = torch.rand(6, 2, 32, 8) * 2 - 1
    critic = ScanClassifier(2, 2, 6).eval().requires_grad_(False)
    return config, autoencoder, images, critic


def test_the_perceptual_term_adds_to_the_stage_one_loss_and_the_critic_stays_frozen():
    sigma = torch.full((6,), 0.05)
    indices = np.array([0, 3, 5])

    def loss(weight, critic=True):
        config, autoencoder, images, scan_critic = _setup(weight)
        function = autoencoder_loss(images, config, 16, scan_critic if critic else None, sigma)
        return function(autoencoder, indices, torch.Generator().manual_seed(1), "cpu"), autoencoder, scan_critic

    plain = loss(0.0, critic=False)[0]
    assert loss(0.0)[0].item() == pytest.approx(plain.item(), rel=1e-6)  # same crops, noise and L1 as stage one
    weighted, autoencoder, critic = loss(1.0)
    assert weighted.item() > plain.item()
    weighted.backward()
    assert all(p.grad is not None for p in autoencoder.parameters())  # encoder and decoder are fine-tuned
    assert all(p.grad is None for p in critic.parameters())
