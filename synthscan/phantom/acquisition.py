"""Acquisition physics of a dual-head whole-body pass: attenuation, depth-dependent collimator blur, scatter,
detector non-uniformity, Poisson counts and a site's post-filter.

Model (planar parallel-hole imaging, e.g. Cherry, Sorenson & Phelps, *Physics in Nuclear Medicine*, 4th ed.,
ch. 14 and 17):

- A source at depth ``d`` below the skin facing a detector is attenuated by ``exp(-mu d)`` with
  ``mu = 0.15 / cm`` for 140 keV photons in water (lung counts at 0.3 of water density), so posterior
  structures (spine, scapulae, kidneys) are brighter in the posterior view and anterior ones (sternum,
  anterior ribs, patellae, face) in the anterior view.
- The collimator's system resolution grows linearly with the source-collimator distance ``z``:
  ``FWHM(z) = fwhm_0 + slope * z`` (LEHR about 7.5 mm, LEGP about 9.5 mm at 10 cm). Emitters are sorted into
  a few depth layers per view by their distance to that view's detector; each layer is blurred with the
  Gaussian of its mean distance. Because Gaussians compose (``G(s1) * G(s2) = G(sqrt(s1^2 + s2^2))``), the
  layers are blurred cumulatively, far to near, with the incremental widths: one cheap separable filter
  per layer.
- Scatter in the photopeak window adds a broad copy of the primary image (``scatter_fraction`` of the counts),
  computed on a coarse grid.
- Whole-body scanning moves the detector along the body, so detector non-uniformity appears as a fixed
  column profile (a few per cent) per site.
- Counts are Poisson with the expected total of the anterior view set by the site; some sites smooth the
  stored image (post-filter), which the stored integer counts then carry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MU_PER_MM = 0.015
LUNG_DENSITY = 0.26
FWHM_TO_SIGMA = 1 / (2 * np.sqrt(2 * np.log(2)))
LAYER_EDGES_MM = (85.0, 165.0)  # source-collimator distances separating the depth layers


@dataclass(frozen=True)
class Collimator:
    """Parallel-hole collimator: system FWHM (mm) = ``fwhm_0_mm + slope * distance_mm``."""

    name: str
    fwhm_0_mm: float
    slope: float
    sensitivity: float  # relative counts per MBq and minute

    def fwhm_mm(self, distance_mm):
        return self.fwhm_0_mm + self.slope * np.asarray(distance_mm, float)


COLLIMATORS = {
    "LEHR": Collimator("LEHR", 3.0, 0.045, 1.0),  # 7.5 mm at 10 cm
    "LEGP": Collimator("LEGP", 3.5, 0.060, 1.6),  # 9.5 mm at 10 cm, more counts
}


@dataclass(frozen=True)
class Emitters:
    """Point sources in detector pixels: row, col (float), depth fraction (0 anterior, 1 posterior), activity."""

    row: np.ndarray
    col: np.ndarray
    z: np.ndarray
    activity: np.ndarray


@dataclass(frozen=True)
class Camera:
    """The acquisition settings of one site (see synthscan/phantom/sites.py)."""

    shape: tuple[int, int]
    pixel_spacing_mm: tuple[float, float]
    collimator: Collimator
    gap_mm: float = 30.0  # body surface to collimator face (body-contouring orbit)
    scatter_fraction: float = 0.3
    scatter_fwhm_mm: float = 60.0
    nonuniformity: float = 0.02
    detector_seed: int = 0
    post_filter_sigma_px: float = 0.0


def water_thickness(thickness: np.ndarray, lung: np.ndarray) -> np.ndarray:
    return thickness - (1 - LUNG_DENSITY) * lung


@dataclass(frozen=True)
class _Footprint:
    """Bilinear splatting of points onto the pixel grid, shared by both views (same projection)."""

    index: np.ndarray  # (4 * n,) flat pixel index of each corner
    weight: np.ndarray  # (4 * n,) bilinear weight of each corner
    keep: np.ndarray  # points inside the field

    @staticmethod
    def of(row: np.ndarray, col: np.ndarray, shape) -> "_Footprint":
        rows, cols = shape
        r0 = np.floor(row)
        c0 = np.floor(col)
        keep = (r0 >= 0) & (r0 < rows - 1) & (c0 >= 0) & (c0 < cols - 1)
        r0, c0 = r0[keep], c0[keep]
        fr, fc = row[keep] - r0, col[keep] - c0
        flat = r0.astype(np.int64) * cols + c0.astype(np.int64)
        index = np.concatenate([flat, flat + 1, flat + cols, flat + cols + 1])
        weight = np.concatenate([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc])
        return _Footprint(index, weight, keep)

    def splat(self, layer: np.ndarray, activity: np.ndarray, shape, n_layers: int) -> np.ndarray:
        pixels = shape[0] * shape[1]
        index = (self.index.reshape(4, -1) + layer[self.keep] * pixels).ravel()
        values = (self.weight.reshape(4, -1) * activity[self.keep]).ravel()
        return np.bincount(index, values, minlength=n_layers * pixels).reshape(n_layers, *shape)


def _layered_blur(layers: np.ndarray, sigmas_mm: np.ndarray, spacing_mm, occupied_rows=None) -> np.ndarray:
    """Sum of layers each blurred by its own Gaussian, blurring cumulatively from the widest to the narrowest.

    Only the rows holding activity (``occupied_rows`` = first, last; plus the blur's reach) are filtered: the
    rest of the field stays zero.
    """
    out = np.zeros(layers.shape[1:], np.float32)
    if occupied_rows is None:
        occupied = np.flatnonzero(layers.any(axis=(0, 2)))
        if occupied.size == 0:
            return out
        occupied_rows = (occupied[0], occupied[-1])
    reach = int(np.ceil(3.5 * max(sigmas_mm) / spacing_mm[0])) + 1
    band = slice(max(occupied_rows[0] - reach, 0), min(occupied_rows[1] + reach + 1, layers.shape[1]))
    order = np.argsort(sigmas_mm)[::-1]
    total = None
    previous = None
    for k in order:
        if previous is not None:
            step = np.sqrt(max(previous ** 2 - sigmas_mm[k] ** 2, 0.0))
            if step > 0.05:
                total = ndimage.gaussian_filter(total, (step / spacing_mm[0], step / spacing_mm[1]), truncate=3.0)
            total += layers[k, band]
        else:
            total = layers[k, band].astype(np.float32, copy=True)
        previous = sigmas_mm[k]
    out[band] = ndimage.gaussian_filter(total, (previous / spacing_mm[0], previous / spacing_mm[1]), truncate=3.0)
    return out


@functools.lru_cache(maxsize=16)
def _upsampling(n_fine: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation from cell centres of a coarse grid (``factor`` fine pixels per cell)."""
    position = (np.arange(n_fine) + 0.5) / factor - 0.5
    low = np.clip(np.floor(position).astype(np.int64), 0, n_fine // factor - 1)
    high = np.minimum(low + 1, n_fine // factor - 1)
    fraction = np.clip(position - low, 0, 1).astype(np.float32)
    return low, high, fraction


def _scatter(primary: np.ndarray, camera: Camera) -> np.ndarray:
    """Broad scatter image with ``scatter_fraction`` of all counts, computed on a coarse grid."""
    rows, cols = primary.shape
    factor = max(1, int(round(9.0 / camera.pixel_spacing_mm[1])))
    while rows % factor or cols % factor:
        factor -= 1
    coarse = primary.reshape(rows // factor, factor, cols // factor, factor).sum(axis=(1, 3))
    sigma = camera.scatter_fwhm_mm * FWHM_TO_SIGMA
    coarse = ndimage.gaussian_filter(coarse, (sigma / (camera.pixel_spacing_mm[0] * factor),
                                              sigma / (camera.pixel_spacing_mm[1] * factor)), mode="constant")
    coarse = coarse.astype(np.float32) * np.float32(camera.scatter_fraction / (1 - camera.scatter_fraction)
                                                     / factor ** 2)
    low, high, fraction = _upsampling(rows, factor)
    coarse = coarse[low] + (coarse[high] - coarse[low]) * fraction[:, None]
    low, high, fraction = _upsampling(cols, factor)
    return coarse[:, low] + (coarse[:, high] - coarse[:, low]) * fraction[None, :]


@functools.lru_cache(maxsize=16)
def detector_profile(cols: int, spacing_mm: float, amplitude: float, seed: int) -> np.ndarray:
    """Fixed column sensitivity of a site's detector: smooth drift plus photomultiplier ripple (mean 1)."""
    rng = np.random.default_rng(seed)
    x = np.arange(cols) * spacing_mm
    drift = ndimage.gaussian_filter1d(rng.normal(0, 1, cols), 40 / spacing_mm, mode="wrap")
    drift /= drift.std() + 1e-12
    ripple = np.sin(2 * np.pi * x / 76.0 + rng.uniform(0, 2 * np.pi))  # tube pitch of about 76 mm
    profile = 1 + amplitude * (0.8 * drift + 0.5 * ripple)
    return (profile / profile.mean()).astype(np.float32)


def expected_counts(emitters: Emitters, soft_tissue_per_mm: float, thickness: np.ndarray, lung: np.ndarray,
                    camera: Camera) -> np.ndarray:
    """Noise-free images ``(2, H, W)`` (anterior, posterior; both seen from the front), arbitrary scale.

    ``soft_tissue_per_mm`` is the soft-tissue emission per mm of water-equivalent path and 4 mm^2 of area (the
    unit of point activities).
    """
    rows, cols = camera.shape
    spacing = camera.pixel_spacing_mm
    water = water_thickness(thickness, lung)
    ri = np.clip(np.rint(emitters.row).astype(np.int64), 0, rows - 1)
    ci = np.clip(np.rint(emitters.col).astype(np.int64), 0, cols - 1)
    path_water = water[ri, ci]
    path_geometric = thickness[ri, ci]
    n_layers = len(LAYER_EDGES_MM) + 1

    # Soft tissue: uniform emission through the water-equivalent thickness, identical in both views; its
    # detected photons come from a mean depth of about min(T/2, 1/mu) below the skin.
    pixel_area = spacing[0] * spacing[1] / 4.0
    soft = (soft_tissue_per_mm * pixel_area / MU_PER_MM) * (1 - np.exp(-MU_PER_MM * water))
    soft_total = float(soft.sum())
    soft_depth = camera.gap_mm + float((np.minimum(thickness / 2, 1 / MU_PER_MM) * soft).sum()) / max(soft_total, 1e-12)

    footprint = _Footprint.of(emitters.row, emitters.col, camera.shape)
    # Rows that hold any activity: points inside the field and soft tissue.
    extent = [int(r) for r in np.flatnonzero(thickness.any(axis=1))[[0, -1]]] if thickness.any() else []
    inside = emitters.row[footprint.keep]
    if inside.size:
        extent += [int(inside.min()), int(inside.max()) + 1]
    first, last = (min(extent), max(extent)) if extent else (0, rows - 1)
    views = []
    for front in (True, False):
        depth_fraction = emitters.z if front else 1 - emitters.z
        attenuation = np.exp(-MU_PER_MM * depth_fraction * path_water)
        activity = emitters.activity * attenuation
        distance = camera.gap_mm + depth_fraction * path_geometric
        layer = np.searchsorted(LAYER_EDGES_MM, distance)
        layers = footprint.splat(layer, activity, camera.shape, n_layers).astype(np.float32)
        weight = np.bincount(layer, activity, minlength=n_layers)
        mean_distance = np.bincount(layer, activity * distance, minlength=n_layers) / np.maximum(weight, 1e-12)
        soft_layer = int(np.searchsorted(LAYER_EDGES_MM, soft_depth))
        layers[soft_layer] += soft
        total = weight.copy()
        total[soft_layer] += soft_total
        mean_distance[soft_layer] = ((mean_distance[soft_layer] * weight[soft_layer] + soft_depth * soft_total)
                                     / max(total[soft_layer], 1e-12))
        used = np.flatnonzero(total > 0)
        sigmas = camera.collimator.fwhm_mm(mean_distance[used]) * FWHM_TO_SIGMA
        primary = _layered_blur(layers if used.size == n_layers else layers[used], sigmas, spacing,
                                (first, last))
        views.append(primary + _scatter(primary, camera))
    image = np.stack(views)
    image *= detector_profile(cols, spacing[1], camera.nonuniformity, camera.detector_seed)[None, None, :]
    return np.maximum(image, 0, out=image)


def poisson_counts(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
    """Independent Poisson counts per pixel (float32 integers), exact for every mean.

    Means below 1 (most pixels outside the body) are drawn by vectorized CDF inversion, the rest by numpy's
    sampler; both are exact, the split only saves time.
    """
    flat = expected.ravel()
    counts = np.zeros(flat.size, np.float32)
    small = np.flatnonzero((flat > 0) & (flat < 1.0))
    large = np.flatnonzero(flat >= 1.0)
    counts[large] = rng.poisson(flat[large])
    if small.size:
        lam = flat[small]
        u = rng.random(small.size)
        term = np.exp(-lam)
        cdf = term.copy()
        k = np.zeros(small.size, np.float32)
        active = np.flatnonzero(u > cdf)
        n = 0
        while active.size and n < 40:  # P(k > 40 | lam < 1) < 1e-48; the cap only guards rounding
            n += 1
            term[active] *= lam[active] / n
            cdf[active] += term[active]
            k[active] = n
            active = active[u[active] > cdf[active]]
        counts[small] = k
    return counts.reshape(expected.shape)


def acquire(rng: np.random.Generator, expected: np.ndarray, anterior_counts: float, camera: Camera) -> np.ndarray:
    """Scale ``expected`` so the anterior view holds ``anterior_counts`` on average, draw Poisson counts and
    apply the site's post-filter. Returns integer-valued float32 counts ``(2, H, W)``."""
    scale = anterior_counts / max(float(expected[0].sum()), 1e-12)
    counts = poisson_counts(rng, expected * scale)
    if camera.post_filter_sigma_px > 0:
        counts = np.rint(ndimage.gaussian_filter(counts, (0, camera.post_filter_sigma_px,
                                                          camera.post_filter_sigma_px), truncate=2.5))
    return counts.astype(np.float32, copy=False)
