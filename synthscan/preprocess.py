"""Canonical grid and intensity transform of the generator, and the way back to clinical counts.

Forward (training): a Scan ``(V, H, W)`` of counts at its clinical matrix (1024x256 or 512x128) is
resampled to the canonical grid (default 256x64 per view: about 9.6 mm pixels, the same field of view)
with counts preserved (block sums when the matrix is a multiple of the grid), normalised by its total
counts so that the mean pixel is 1 (dose, scan speed and body size change the total, not the pattern), and
passed through a square root, the variance-stabilising transform of Poisson data (Anscombe 1948,
Biometrika 35:246; a sqrt of counts has variance ~1/4 whatever the mean), scaled so that 0 counts map
to -1 and the reference intensity ``INTENSITY_REF`` (a hot bone/bladder pixel, ~16x the mean) maps to +1:

    y = 2 * sqrt(p / p_ref) - 1,        p = counts * n_pixels / total_counts

All views of a study share one normalisation, so anterior/posterior ratios survive.

Backward (sampling): network output y -> p = p_ref * ((max(y, -1) + 1) / 2)**2 -> expected counts
``lambda = p / sum(p) * total_counts`` (the total drawn per sample from the training distribution of the
condition) -> resampling to the user's clinical matrix (bilinear, block sums kept: see
:func:`upsample_keeping_blocks`), keeping the physical field of view (pixel spacing = field / matrix) and the
total -> Poisson counts drawn with the sample's own generator. The network
thus models the expected count pattern; count noise comes from the physics, not from the network, which
keeps the count statistics of real scans (and integer counts) at any matrix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from synthscan.errors import BadInputError
from synthscan.scan import Scan

if TYPE_CHECKING:  # torch is imported where it is used: parsing a matrix must not load it
    import torch

INTENSITY_REF = 16.0  # normalised intensity (mean pixel = 1) that maps to y = +1


def canonical_counts(scan: Scan, rows: int, cols: int) -> np.ndarray:
    """Counts of ``scan`` on the canonical grid ``(V, rows, cols)``, float32, total counts preserved."""
    import torch
    import torch.nn.functional as F

    counts = scan.counts
    height, width = scan.shape
    if height % rows == 0 and width % cols == 0:  # clinical matrices: exact block sums
        fy, fx = height // rows, width // cols
        return counts.reshape(len(counts), rows, fy, cols, fx).sum(axis=(2, 4), dtype=np.float64).astype(np.float32)
    resampled = F.interpolate(torch.from_numpy(counts)[None], size=(rows, cols), mode="bilinear",
                              antialias=True, align_corners=False)[0].clamp_min(0).numpy()
    totals = counts.sum(axis=(1, 2), keepdims=True, dtype=np.float64)
    sums = resampled.sum(axis=(1, 2), keepdims=True, dtype=np.float64)
    return (resampled * np.divide(totals, sums, out=np.zeros_like(totals), where=sums > 0)).astype(np.float32)


def field_of_view_mm(scan: Scan) -> tuple[float, float]:
    """Physical size (rows, cols) of the scanned field in mm."""
    return scan.shape[0] * scan.pixel_spacing_mm[0], scan.shape[1] * scan.pixel_spacing_mm[1]


def to_network(counts: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Canonical counts ``(..., V, rows, cols)`` -> network input y (float32 tensor, same shape)."""
    import torch

    counts = torch.as_tensor(counts, dtype=torch.float32)
    n_pixels = counts.shape[-3] * counts.shape[-2] * counts.shape[-1]
    totals = counts.sum(dim=(-3, -2, -1), keepdim=True)
    if (totals <= 0).any():
        raise BadInputError("a scan has no counts: it cannot be normalised")
    intensity = counts * (n_pixels / totals)
    return 2 * torch.sqrt(intensity / INTENSITY_REF) - 1


def from_network(y: torch.Tensor) -> torch.Tensor:
    """Network output y -> relative intensity (>= 0), the inverse of :func:`to_network` up to scale."""
    return INTENSITY_REF * ((y.clamp_min(-1) + 1) / 2) ** 2


def expected_counts(y: torch.Tensor, total_counts, matrix: tuple[int, int]) -> torch.Tensor:
    """Network output ``(B, V, r, c)`` -> expected counts ``(B, V, *matrix)`` summing to ``total_counts``."""
    import torch

    intensity = from_network(y)
    if tuple(intensity.shape[-2:]) != tuple(matrix):
        intensity = upsample_keeping_blocks(intensity, matrix)
    totals = torch.as_tensor(total_counts, dtype=torch.float32, device=intensity.device).reshape(-1, 1, 1, 1)
    sums = intensity.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return intensity.mul_(totals / sums)  # in place: intensity is a fresh tensor (from_network or upsampling)


def upsample_keeping_blocks(intensity: torch.Tensor, matrix: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of ``(B, V, r, c)`` to ``matrix``; at integer multiples of the grid, each block of the
    result is rescaled to the mean of its source pixel.

    Plain bilinear interpolation followed by the block sums of :func:`canonical_counts` acts as a
    [1/8, 3/4, 1/8] blur per axis: a one-pixel hot spot would lose 44% of its peak on the way from the
    network to the clinical matrix and back. The block rescaling makes the forward resampling undo this one
    exactly (block sums of the output = the network's canonical intensities) and keeps bilinear smoothness
    inside each block.
    """
    import torch
    import torch.nn.functional as F

    rows, cols = intensity.shape[-2:]
    up = F.interpolate(intensity, size=tuple(matrix), mode="bilinear", align_corners=False).clamp_min_(0)
    if matrix[0] % rows or matrix[1] % cols:  # also true for any matrix smaller than the grid
        return up
    fy, fx = matrix[0] // rows, matrix[1] // cols
    blocks = up.view(*up.shape[:-2], rows, fy, cols, fx)  # rescaled in place: one full-size tensor in all
    block_means = blocks.mean(dim=(-3, -1))
    scale = torch.where(block_means > 0, intensity / block_means.clamp_min(1e-12), torch.zeros_like(intensity))
    blocks.mul_(scale[..., :, None, :, None])
    return up


def poisson_counts(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer counts drawn from Poisson(expected) with the sample's own generator (float32 array)."""
    return rng.poisson(np.asarray(expected, dtype=np.float64)).astype(np.float32)


def output_spacing_mm(field_mm: tuple[float, float], matrix: tuple[int, int]) -> tuple[float, float]:
    """Pixel spacing that keeps the physical field of view at a new matrix."""
    return field_mm[0] / matrix[0], field_mm[1] / matrix[1]


def parse_matrix(text: str) -> tuple[int, int]:
    """``"1024x256"`` -> (1024, 256)."""
    try:
        rows, cols = (int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise BadInputError(f"matrix must look like 1024x256, got {text!r}") from None
    if rows < 8 or cols < 2 or rows > 4096 or cols > 4096:
        raise BadInputError(f"matrix {rows}x{cols} out of range (8..4096 rows, 2..4096 cols)")
    return rows, cols
