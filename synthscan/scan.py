"""The scan record and the one orientation rule of synthscan.

Orientation rule (stated here only; converted at the I/O boundary, nowhere else):
a scan is a float32 array ``(V, H, W)`` of counts. ``V`` indexes the views, in the order of ``views``
(default ``("anterior", "posterior")``). ``H`` runs along the body axis with the head at row 0, ``W``
across the body. Every view is seen *from the front*: the patient's right is at column 0 and the
patient's left at column ``W - 1`` (DICOM patient orientation ``L\\F`` for rows/columns). A posterior
detector looks at the patient from behind, so its native image is mirrored left-right before it
becomes a view of a Scan (:func:`posterior_to_front` / :func:`front_to_posterior`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthscan.errors import BadInputError

VIEWS = ("anterior", "posterior")
VIEW_SETS = {"anterior+posterior": ("anterior", "posterior"), "anterior": ("anterior",), "posterior": ("posterior",)}
CLINICAL_MATRICES = ((1024, 256), (512, 128))


def views_key(views: tuple[str, ...]) -> str:
    """The manifest's ``views`` value for a tuple of views."""
    return "+".join(views)


def posterior_to_front(image: np.ndarray) -> np.ndarray:
    """Mirror a posterior detector image (seen from behind) so it is seen from the front."""
    return np.ascontiguousarray(image[..., ::-1])


front_to_posterior = posterior_to_front  # mirroring is its own inverse


@dataclass(frozen=True, eq=False)
class Scan:
    """One whole-body study: counts ``(V, H, W)``, pixel spacing in mm (row, column), view names."""

    counts: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    views: tuple[str, ...] = VIEWS
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        counts = np.asarray(self.counts)
        if counts.ndim == 2:
            counts = counts[None]
        if counts.ndim != 3:
            raise BadInputError(f"scan counts must have shape (views, rows, cols), got {counts.shape}")
        views = tuple(self.views)
        if len(views) != counts.shape[0]:
            raise BadInputError(f"{counts.shape[0]} view image(s) but views={views}")
        if views_key(views) not in VIEW_SETS:
            raise BadInputError(f"views must be one of {sorted(VIEW_SETS)}, got {views_key(views)!r}")
        if counts.shape[1] < 2 or counts.shape[2] < 2:
            raise BadInputError(f"scan image too small: {counts.shape}")
        counts = counts.astype(np.float32, copy=False)
        if not np.isfinite(counts).all():
            raise BadInputError("scan counts contain NaN or infinite values")
        if (counts < 0).any():
            raise BadInputError(f"scan counts contain negative values (min {counts.min():g})")
        spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(self.pixel_spacing_mm, float), (2,)))
        if not all(np.isfinite(s) and s > 0 for s in spacing):
            raise BadInputError(f"pixel spacing must be > 0 mm, got {self.pixel_spacing_mm}")
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "views", views)
        object.__setattr__(self, "pixel_spacing_mm", spacing)

    @property
    def shape(self) -> tuple[int, int]:
        """Matrix (rows, cols) of each view."""
        return self.counts.shape[1], self.counts.shape[2]

    def view(self, name: str) -> np.ndarray:
        """The image of one view (seen from the front)."""
        if name not in self.views:
            raise KeyError(f"scan has no {name} view (views: {self.views})")
        return self.counts[self.views.index(name)]

    @property
    def total_counts(self) -> float:
        return float(self.counts.sum())

    def __repr__(self):
        return (f"Scan(views={self.views}, shape={self.shape}, pixel_spacing_mm={self.pixel_spacing_mm}, "
                f"total_counts={self.total_counts:.0f})")
