"""One rendering for every case of a reader study, so that real and synthetic differ only in their pixels.

Each case goes through the same steps: optional binomial thinning to a common count level (Poisson counts
thinned with probability q stay Poisson, so noise becomes comparable), count-conserving area resampling to
one grid, the project's nuclear-medicine window (``synthscan.render``: a body-pixel percentile shared by both
views, inverted grey), 8-bit quantization, and the clinical display orientation (anterior seen from the
front, posterior as its detector sees it, from behind). The result is a raw ``uint8`` array of exactly
``views x rows x cols`` bytes: no compression, so a case's size says nothing about its noise (a PNG's would).
"""

from __future__ import annotations

import io

import numpy as np

from synthscan.render import DEFAULT_PERCENTILE, window, window_max
from synthscan.scan import Scan, front_to_posterior


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) overlap weights; each input pixel's weights sum to 1, so counts are conserved."""
    edges_in = np.arange(n_in + 1) / n_in
    edges_out = np.arange(n_out + 1) / n_out
    low = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    high = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(high - low, 0, None) * n_in


def resample_area(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Resample a count image (..., H, W) to (..., rows, cols), conserving the total counts."""
    image = np.asarray(image, np.float64)
    row_weights = area_weights(image.shape[-2], rows)
    col_weights = area_weights(image.shape[-1], cols)
    return row_weights @ image @ col_weights.T


def thin_counts(counts: np.ndarray, counts_per_view: float, rng: np.random.Generator) -> np.ndarray:
    """Binomially thin each view with more than ``counts_per_view`` total counts down to about that many."""
    counts = np.rint(np.asarray(counts, np.float64)).astype(np.int64)
    out = counts.copy()
    for v, view in enumerate(counts):
        total = view.sum()
        if total > counts_per_view:
            out[v] = rng.binomial(view, counts_per_view / total)
    return out.astype(np.float32)


def display_pixels(scan: Scan, grid: tuple[int, int], percentile: float = DEFAULT_PERCENTILE,
                   counts_per_view: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """A scan as it appears in a packet: ``uint8 (views, rows, cols)``, 255 = white = no counts."""
    counts = scan.counts
    if counts_per_view is not None:
        if rng is None:
            raise ValueError("thinning needs a random generator")
        counts = thin_counts(counts, counts_per_view, rng)
    counts = resample_area(counts, *grid)
    top = window_max(counts, percentile)
    views = []
    for name, image in zip(scan.views, counts):
        shown = window(image, top)
        views.append(front_to_posterior(shown) if name == "posterior" else shown)
    return np.rint(np.stack(views) * 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """The case as one PNG (views side by side, Pillow's default settings): used only to measure leakage."""
    from PIL import Image

    side_by_side = np.concatenate(list(pixels), axis=1)
    buffer = io.BytesIO()
    Image.fromarray(side_by_side, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
