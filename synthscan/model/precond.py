"""EDM preconditioning, noise distribution and loss (Karras et al. 2022, "Elucidating the design space of
diffusion-based generative models", NeurIPS; Table 1 and eq. 7-8).

The network F is wrapped into a denoiser

    D(x; sigma, class) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma), class)

with c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2),
c_noise = ln(sigma) / 4, so that F's input and target both have unit variance at every noise level. Training
draws ln(sigma) ~ N(P_mean, P_std^2) and weights the squared error by (sigma^2 + sd^2) / (sigma sd)^2.

F is a diffusers ``UNet2DModel`` whose class embedding carries the condition (synthscan/model/conditions.py);
class 0 is the null condition of classifier-free guidance (Ho & Salimans 2022). diffusers' sinusoidal
timestep embedding is built for DDPM's timesteps 0..1000, so c_noise is passed multiplied by 1000 (the
embedding then resolves ln(sigma) over the whole EDM range sigma in [0.002, 80]).
"""

from __future__ import annotations

import torch
from torch import nn

TIMESTEP_SCALE = 1000.0


def build_unet(latent_channels: int, latent_shape: tuple[int, int], channels, layers_per_block: int,
               attention: bool, norm_groups: int, num_classes: int):
    """The latent UNet (diffusers UNet2DModel), one class embedding per condition class plus the null class."""
    from diffusers import UNet2DModel

    levels = len(channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=tuple(latent_shape), in_channels=latent_channels, out_channels=latent_channels,
        block_out_channels=tuple(channels), layers_per_block=layers_per_block, down_block_types=tuple(down),
        up_block_types=tuple(up), norm_num_groups=norm_groups, num_class_embeds=num_classes,
        attention_head_dim=min(32, channels[-1]), add_attention=attention, flip_sin_to_cos=True, freq_shift=0)


class EDMDenoiser(nn.Module):
    """D(x; sigma, class) around a network F (eq. 7); ``forward`` takes per-sample sigmas and class ids."""

    def __init__(self, network: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.network = network
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sigma ** 2 + sd ** 2).sqrt()
        c_noise = sigma.log().flatten() / 4
        out = self.network((c_in * x).to(x.dtype), (c_noise * TIMESTEP_SCALE).to(x.dtype),
                           class_labels=class_labels).sample
        return c_skip * x + c_out * out.to(torch.float32)


def edm_loss(denoiser, latents: torch.Tensor, class_labels: torch.Tensor, p_mean: float, p_std: float,
             sigma_data: float, generator: torch.Generator) -> torch.Tensor:
    """The weighted denoising loss (eq. 8) with noise levels and noise drawn from ``generator``.

    ``denoiser`` is an :class:`EDMDenoiser`, possibly wrapped (DDP), hence ``sigma_data`` is passed.
    """
    n = latents.shape[0]
    log_sigma = torch.randn(n, generator=generator) * p_std + p_mean
    noise = torch.randn(latents.shape, generator=generator)
    sigma = log_sigma.exp().to(latents.device)
    sd = sigma_data
    weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
    noisy = latents + noise.to(latents.device) * sigma.reshape(-1, 1, 1, 1)
    denoised = denoiser(noisy, sigma, class_labels)
    return (weight.reshape(-1, 1, 1, 1) * (denoised - latents) ** 2).mean()


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """The EDM time discretisation (eq. 5): ``steps`` noise levels from sigma_max down to sigma_min, then 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_rho = 1.0 / rho
    sigmas = (sigma_max ** inv_rho + ramp * (sigma_min ** inv_rho - sigma_max ** inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(torch.float32)
