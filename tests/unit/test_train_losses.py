"""Pieces of the perceptual and decoder stages (synthscan/train.py): count-noise level, perceptual loss, decoder growth."""

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


@pytest.mark.parametrize("blocks", [(1, 3), (2, 3)])
def test_a_grown_decoder_decodes_exactly_as_before_and_a_decoder_cannot_shrink(blocks):
    before, after = blocks
    torch.manual_seed(0)
    autoencoder = Autoencoder(2, (4, 8, 8), 2, 2, before)
    for parameter in autoencoder.parameters():  # trained-like weights: no zero biases or unit norms
        torch.nn.init.normal_(parameter, std=0.2)
    grown = autoencoder.with_decoder_blocks(after)
    assert grown.config == {**autoencoder.config, "decoder_blocks": after}
    extra = sum(p.numel() for p in grown.parameters()) - sum(p.numel() for p in autoencoder.parameters())
    assert extra == (after - before) * sum(2 * (9 * c * c + c) + 4 * c for c in (4, 8, 8))  # two convs, two norms
    x = torch.rand(3, 2, 32, 8)
    with torch.no_grad():
        assert torch.equal(grown(x), autoencoder(x))
    with pytest.raises(ValueError, match="shrink"):
        grown.with_decoder_blocks(before)


def test_the_decoder_stage_has_the_perceptual_loss_and_trains_the_decoder_alone():
    sigma = torch.full((6,), 0.05)
    config, whole, images, critic = _setup(1.0)
    decoder_only = AutoencoderForTraining(Autoencoder(2, (4, 8), config.autoencoder.latent_channels, 2))
    decoder_only.autoencoder.load_state_dict(whole.autoencoder.state_dict())
    decoder_only.autoencoder.encoder.requires_grad_(False)  # as train() does for stage decoder
    function = autoencoder_loss(images, config, 16, critic, sigma)
    losses = [function(model, np.array([0, 3, 5]), torch.Generator().manual_seed(1), "cpu")
              for model in (whole, decoder_only)]
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-6)  # the same loss, as a forward pass
    losses[1].backward()
    assert all(p.grad is None for p in decoder_only.autoencoder.encoder.parameters())
    assert all(p.grad is not None for p in decoder_only.autoencoder.decoder.parameters())
