"""A small convolutional autoencoder that maps a canonical scan to a compact latent and back.

Latent diffusion (Rombach et al. 2022, "High-resolution image synthesis with latent diffusion models",
CVPR) runs the expensive iterative denoiser on a small latent and the decoder once per sample. Here the
latent of a 2x256x64 scan is 4x32x8 (8x smaller per side with three levels, 32x fewer numbers), which makes
``synthscan sample -n 5000`` fit in minutes on a laptop CPU.

Design, chosen for CPU speed and for small hot spots:
- The finest factor of 2 is a space-to-depth shuffle (Shi et al. 2016, "Real-time single image and video
  super-resolution using an efficient sub-pixel convolutional neural network", CVPR): no convolution ever
  runs at full resolution, which halves the decoder's cost at the same width.
- Residual blocks with GroupNorm and SiLU (as in the Stable Diffusion autoencoder), no attention (the
  autoencoder is trained on row bands of the scan and must stay translation-equivariant along the body).
- Deterministic encoder. Instead of a KL term, the latent gets a small L2 penalty and the decoder is
  trained on slightly noised latents (``latent_noise``), so it tolerates the small errors of generated
  latents. Latents are standardised by their training statistics before diffusion (synthscan/model/pipeline.py).
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(groups, out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    def __init__(self, views: int, channels, latent_channels: int, groups: int):
        super().__init__()
        layers = [nn.PixelUnshuffle(2), nn.Conv2d(4 * views, channels[0], 3, padding=1)]
        for level, width in enumerate(channels):
            layers.append(ResidualBlock(width, width, groups))
            if level + 1 < len(channels):
                layers.append(nn.Conv2d(width, channels[level + 1], 3, stride=2, padding=1))
        layers += [ResidualBlock(channels[-1], channels[-1], groups), nn.GroupNorm(min(groups, channels[-1]), channels[-1]),
                   nn.SiLU(), nn.Conv2d(channels[-1], latent_channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class Decoder(nn.Module):
    def __init__(self, views: int, channels, latent_channels: int, groups: int, blocks: int):
        super().__init__()
        layers = [nn.Conv2d(latent_channels, channels[-1], 3, padding=1), ResidualBlock(channels[-1], channels[-1], groups)]
        for level in reversed(range(len(channels))):
            width = channels[level]
            if level + 1 < len(channels):
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels[level + 1], width, 3, padding=1)]
            layers += [ResidualBlock(width, width, groups) for _ in range(blocks)]
        layers += [nn.GroupNorm(min(groups, channels[0]), channels[0]), nn.SiLU(),
                   nn.Conv2d(channels[0], 4 * views, 3, padding=1), nn.PixelShuffle(2)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z):
        return self.layers(z)


class Autoencoder(nn.Module):
    """Encoder/decoder pair: ``(B, V, H, W)`` <-> ``(B, latent_channels, H / d, W / d)``, d = 2**len(channels)."""

    def __init__(self, views: int = 2, channels=(16, 32, 64), latent_channels: int = 4, norm_groups: int = 8,
                 decoder_blocks: int = 1):
        super().__init__()
        self.config = dict(views=views, channels=list(channels), latent_channels=latent_channels,
                           norm_groups=norm_groups, decoder_blocks=decoder_blocks)
        self.encoder = Encoder(views, channels, latent_channels, norm_groups)
        self.decoder = Decoder(views, channels, latent_channels, norm_groups, decoder_blocks)

    @property
    def downsampling(self) -> int:
        """Side length ratio of image to latent."""
        return 2 ** len(self.config["channels"])

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        return self.decode(self.encode(x))

    def with_decoder_blocks(self, blocks: int) -> "Autoencoder":
        """A copy with ``blocks`` residual blocks per decoder level: the existing layers keep their weights and
        the added blocks start as identities (last convolution zero), so the copy decodes exactly as this one."""
        if blocks < self.config["decoder_blocks"]:
            raise ValueError(f"cannot shrink the decoder from {self.config['decoder_blocks']} to {blocks} blocks")
        grown = Autoencoder(**{**self.config, "decoder_blocks": blocks}).to(next(self.parameters()).device)
        grown.encoder.load_state_dict(self.encoder.state_dict())
        old, new = list(self.decoder.layers), iter(grown.decoder.layers)
        for index, layer in enumerate(old):  # same order; each level's added blocks follow its last block
            next(new).load_state_dict(layer.state_dict())
            if index >= 2 and isinstance(layer, ResidualBlock) and not isinstance(old[index + 1], ResidualBlock):
                for _ in range(blocks - self.config["decoder_blocks"]):
                    added = next(new)
                    nn.init.zeros_(added.conv2.weight)
                    nn.init.zeros_(added.conv2.bias)
        return grown
