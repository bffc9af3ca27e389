"""Pieces of the decoder fine-tuning stage (synthscan/train.py): count-noise level and the perceptual loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthscan.config import TrainConfig, merge
from synthscan.model.autoencoder import Autoencoder
from synthscan.model.critic import ScanClassifier
from synthscan.preprocess import to_network
from synthscan.train import decoder_loss, noise_sd


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
    config = merge(TrainConfig(), {"perceptual": {"weight": weight}})
    autoencoder = Autoencoder(2, (4, 8), 2, 2)
    images = torch.rand(6, 2, 32, 8) * 2 - 1
    raw = autoencoder.encode(images).detach()
    critic = ScanClassifier(2, 2, 6).eval().requires_grad_(False)
    return config, autoencoder, images, raw, critic


def test_perceptual_weight_zero_is_plain_l1_and_the_critic_stays_frozen():
    config, autoencoder, images, raw, critic = _setup(0.0)
    sigma = torch.full((6,), 0.05)
    indices = np.array([0, 3, 5])
    plain = decoder_loss(images, raw, sigma, critic, config)(autoencoder.decoder, indices,
                                                             torch.Generator().manual_seed(1), "cpu")
    generator = torch.Generator().manual_seed(1)
    latent = raw[indices]
    latent = latent + config.autoencoder.latent_noise * latent.std() * torch.randn(latent.shape, generator=generator)
    expected = (autoencoder.decode(latent) - images[indices]).abs().mean()
    assert plain.item() == pytest.approx(expected.item(), rel=1e-6)

    config, autoencoder, images, raw, critic = _setup(1.0)
    loss = decoder_loss(images, raw, sigma, critic, config)(autoencoder.decoder, indices,
                                                            torch.Generator().manual_seed(1), "cpu")
    assert loss.item() > plain.item()
    loss.backward()
    assert all(p.grad is not None for p in autoencoder.decoder.parameters())
    assert all(p.grad is None for p in critic.parameters())
