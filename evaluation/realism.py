"""Realism statistics of a planar whole-body view, to hold the phantom against a real scan (NEMA WG04 NM1).

Geometry as in /work/shared/PHANTOM.md: the body spans the rows whose summed counts exceed 1% of the
largest row sum; positions are fractions of that length from the head. Statistics of one view:
- body-axis profile: the share of counts in each of 100 equal steps of body length (row sums, cut at
  fractional rows by interpolating their cumulative sum), and from the same cumulative sum the regional
  shares head 0-12%, thorax 12-35%, abdomen/pelvis 35-55%, legs 55-100%;
- bladder-to-bone ratio: the peak of the view smoothed over 5x5 pixels (about 11 mm at 2.26 mm) in the
  pelvic search box (35-60% of body length, within 50 mm of the body's midline) over the 95th percentile
  of the smoothed thorax band (12-35%), whose brightest pixels are sternum, ribs, spine and shoulders;
- zero-pixel share of the whole matrix; median and 99th percentile of the body (non-zero) pixels;
- high-frequency noise power: the radially averaged power spectrum ``|FFT(view - mean)|^2 / pixels``
  (frequency radius as a fraction of the Nyquist frequency, 0.5 cycles per pixel), averaged over 0.7-1.0
  and divided by the mean counts per pixel. Poisson noise is white at the mean count while structure
  blurred by the collimator has left these frequencies, so unfiltered counts give about 1 and any
  smoothing (post-filter, resampling) gives less (Cunningham & Shaw 1999 on noise power spectra). The same
  ratio over 0.15-0.35 Nyquist (periods of 6-13 pixels) measures fine structure: bone edges and texture as
  the collimator resolves them. It is reported, not guarded (see docs/phantom_realism.md).

:func:`compare` checks a set of phantom views against the reference with :data:`TOLERANCES`, which start from
the phantom's own realism tests (regional shares +-0.05, pixel median and 99th percentile within 30 %,
zero share +-0.15). One real image proves little: these numbers guard against drift, they do not validate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

REGIONS = ("head", "thorax", "abdomen_pelvis", "legs")
REGION_EDGES = (0.0, 0.12, 0.35, 0.55, 1.0)  # fractions of body length from the head (PHANTOM.md)
PROFILE_STEPS = 100
SMOOTHING_PX = 5
PELVIS_SEARCH = (0.35, 0.60)
PELVIS_HALF_WIDTH_MM = 50.0
BONE_PERCENTILE = 95.0
NOISE_BAND = (0.7, 1.0)  # fractions of the Nyquist frequency
STRUCTURE_BAND = (0.15, 0.35)

# statistic: (kind, tolerance) for the mean over phantom views against the reference value.
TOLERANCES = {
    "total_counts": ("relative", 0.01), "share_head": ("absolute", 0.05), "share_thorax": ("absolute", 0.05),
    "share_abdomen_pelvis": ("absolute", 0.05), "share_legs": ("absolute", 0.05),
    "profile_l1": ("at most", 0.25), "bladder_to_bone": ("relative", 0.5), "zero_share": ("absolute", 0.15),
    "body_median": ("relative", 0.3), "body_p99": ("relative", 0.3), "noise_power_ratio": ("absolute", 0.15),
}


@dataclass(frozen=True, eq=False)
class ViewStatistics:
    """Realism statistics of one view (see the module docstring)."""

    total_counts: float
    body_rows: tuple[int, int]
    profile: np.ndarray  # share of counts per 1% of body length, head first (sums to 1)
    regional_shares: tuple[float, float, float, float]
    bladder_to_bone: float
    zero_share: float
    body_median: float
    body_p99: float
    noise_power_ratio: float
    structure_power_ratio: float

    def scalars(self) -> dict[str, float]:
        shares = {f"share_{name}": share for name, share in zip(REGIONS, self.regional_shares)}
        return {"total_counts": self.total_counts, **shares, "bladder_to_bone": self.bladder_to_bone,
                "zero_share": self.zero_share, "body_median": self.body_median, "body_p99": self.body_p99,
                "noise_power_ratio": self.noise_power_ratio, "structure_power_ratio": self.structure_power_ratio}


def body_rows(image: np.ndarray) -> tuple[int, int]:
    """First and last row of the body: row sums above 1% of the largest row sum."""
    profile = image.sum(axis=1)
    rows = np.flatnonzero(profile > 0.01 * profile.max())
    return int(rows[0]), int(rows[-1])


def _shares(image: np.ndarray, rows: tuple[int, int], edges) -> np.ndarray:
    """Share of the body's counts between fractions ``edges`` of its length (fractional rows interpolated)."""
    top, bottom = rows
    cumulative = np.concatenate([[0.0], np.cumsum(image[top: bottom + 1].sum(axis=1, dtype=np.float64))])
    at = np.interp(np.asarray(edges) * (bottom + 1 - top), np.arange(len(cumulative)), cumulative)
    return np.diff(at) / cumulative[-1]


def radial_power_spectrum(image: np.ndarray, n_bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres as fractions of Nyquist, mean power per bin) of ``|FFT(image - mean)|^2 / pixels``."""
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2 / image.size
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(image.shape[0]), np.fft.fftfreq(image.shape[1]),
                                   indexing="ij")) / 0.5
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.digitize(radius.ravel(), edges) - 1
    inside = (index >= 0) & (index < n_bins)
    sums = np.bincount(index[inside], power.ravel()[inside], n_bins)
    counts = np.bincount(index[inside], minlength=n_bins)
    return (edges[:-1] + edges[1:]) / 2, sums / np.maximum(counts, 1)


def power_ratio(image: np.ndarray, band=NOISE_BAND) -> float:
    """Mean power in ``band`` (fractions of Nyquist) over the mean counts per pixel: about 1 for unfiltered
    Poisson counts in the high-frequency band."""
    centres, power = radial_power_spectrum(image)
    inside = (centres >= band[0]) & (centres <= band[1])
    return float(power[inside].mean() / image.mean())


def bladder_to_bone(image: np.ndarray, rows: tuple[int, int], pixel_spacing_mm: float) -> float:
    top, bottom = rows
    length = bottom + 1 - top
    smooth = ndimage.uniform_filter(image.astype(np.float64), SMOOTHING_PX)
    pelvis = slice(top + int(PELVIS_SEARCH[0] * length), top + int(PELVIS_SEARCH[1] * length))
    columns = image[top: bottom + 1].sum(axis=0)
    midline = int(round(float((columns * np.arange(image.shape[1])).sum() / columns.sum())))
    half = int(round(PELVIS_HALF_WIDTH_MM / pixel_spacing_mm))
    bladder = smooth[pelvis, max(midline - half, 0): midline + half + 1].max()
    thorax = smooth[top + int(REGION_EDGES[1] * length): top + int(REGION_EDGES[2] * length)]
    bone = np.percentile(thorax[thorax > 0], BONE_PERCENTILE)
    return float(bladder / bone)


def view_statistics(image: np.ndarray, pixel_spacing_mm: float) -> ViewStatistics:
    """All statistics of one view (counts, head at row 0; ``pixel_spacing_mm`` across the body)."""
    image = np.asarray(image, dtype=np.float64)
    rows = body_rows(image)
    body = image[image > 0]
    return ViewStatistics(
        total_counts=float(image.sum()), body_rows=rows,
        profile=_shares(image, rows, np.linspace(0, 1, PROFILE_STEPS + 1)),
        regional_shares=tuple(float(s) for s in _shares(image, rows, REGION_EDGES)),
        bladder_to_bone=bladder_to_bone(image, rows, pixel_spacing_mm),
        zero_share=float((image == 0).mean()), body_median=float(np.median(body)),
        body_p99=float(np.percentile(body, 99)), noise_power_ratio=power_ratio(image, NOISE_BAND),
        structure_power_ratio=power_ratio(image, STRUCTURE_BAND))


def profile_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of absolute differences of two body-axis profiles (0 = same, 2 = disjoint)."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).sum())


@dataclass(frozen=True)
class Comparison:
    """One statistic: the reference value, the phantom's mean, SD and range, and whether the mean is within."""

    statistic: str
    reference: float
    mean: float
    sd: float
    low: float
    high: float
    tolerance: str
    within: bool


def _within(kind: str, tolerance: float, reference: float, mean: float) -> bool:
    if kind == "absolute":
        return abs(mean - reference) <= tolerance
    if kind == "relative":
        return abs(mean / reference - 1) <= tolerance
    return mean <= tolerance  # "at most"


def compare(reference: ViewStatistics, views: list[ViewStatistics], tolerances=None) -> list[Comparison]:
    """Each statistic of ``views`` (mean, SD, range) against ``reference``, checked with ``tolerances``."""
    tolerances = TOLERANCES if tolerances is None else tolerances
    values = {name: [v.scalars()[name] for v in views] for name in reference.scalars()}
    values["profile_l1"] = [profile_l1(v.profile, reference.profile) for v in views]
    reference_values = {**reference.scalars(), "profile_l1": 0.0}
    mean_profile = np.mean([v.profile for v in views], axis=0)
    results = []
    for name, series in values.items():
        series = np.asarray(series, dtype=np.float64)
        # The profile's tolerance applies to the distance of the mean profile (single scans vary more).
        mean = profile_l1(mean_profile, reference.profile) if name == "profile_l1" else float(series.mean())
        kind, tolerance = tolerances.get(name, ("none", np.nan))
        text = {"absolute": f"+-{tolerance:g}", "relative": f"+-{tolerance:.0%}", "at most": f"<= {tolerance:g}",
                "none": "-"}[kind]
        within = True if kind == "none" else _within(kind, tolerance, reference_values[name], mean)
        results.append(Comparison(name, float(reference_values[name]), mean, float(series.std(ddof=1))
                                  if len(series) > 1 else 0.0, float(series.min()), float(series.max()), text,
                                  bool(within)))
    return results
