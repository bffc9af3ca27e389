"""Class-imbalance strategies and conventional augmentation for the downstream classifiers.

The four strategies of the 2023 Heliyon ResNet50 bone-metastasis study (../shared/SEEDS.md): the original
training set; the original with a 1:10 class weight; 10-fold augmentation of positive images only; 10-fold
augmentation of all images. Their "10-fold augmentation" enlarges the training set offline: every image
becomes 10 (the original and 9 augmented copies), and the copies stay fixed through training. Here copy ``c``
of training row ``i`` is drawn from ``seed, i, c`` alone, which is the same thing without writing images.
A fifth arm, ``conventional``, is on-the-fly augmentation alone (a fresh draw every time a scan is used).
"Positive" means any label > 0 (for ``amyloid_grade``: grade 1-3).

Augmentation suited to planar scintigraphy, applied to grid *counts* before normalisation:
- Poisson resampling to a lower count level (binomial thinning of the counts keeps them Poisson: a shorter
  scan time or lower dose, 25-100% of the counts);
- a small affine change of pose (rotation +-5 degrees, scale +-8%, shift); never a left-right flip, since the
  heart and the patient's sides are not symmetric;
- Gaussian blur of 0-1 grid pixels (collimators and post-filters differ between sites).
Both views get the same geometric transform (they are registered, see synthscan/scan.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from synthscan.errors import BadInputError


@dataclass(frozen=True)
class Strategy:
    """How a training set is used: loss weight of positives, copies per row, on-the-fly augmentation."""

    name: str
    positive_weight: float = 1.0
    positive_copies: int = 1
    negative_copies: int = 1
    online_augmentation: bool = False


STRATEGIES = {
    "original": Strategy("original"),
    "class-weight": Strategy("class-weight", positive_weight=10.0),
    "augment-positives": Strategy("augment-positives", positive_copies=10),
    "augment-all": Strategy("augment-all", positive_copies=10, negative_copies=10),
    "conventional": Strategy("conventional", online_augmentation=True),
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise BadInputError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)})")
    return STRATEGIES[name]


@dataclass(frozen=True)
class AugmentRanges:
    """Ranges from which augmentation parameters are drawn (uniformly)."""

    rotation_deg: float = 5.0
    scale: tuple[float, float] = (0.92, 1.08)
    shift_fraction: tuple[float, float] = (0.03, 0.05)  # of rows, of columns
    count_fraction: tuple[float, float] = (0.25, 1.0)
    blur_px: tuple[float, float] = (0.0, 1.0)


def draw_params(rng: np.random.Generator, ranges: AugmentRanges = AugmentRanges()) -> dict:
    """One draw of augmentation parameters."""
    return {
        "rotation_deg": rng.uniform(-ranges.rotation_deg, ranges.rotation_deg),
        "scale": rng.uniform(*ranges.scale),
        "shift_rows": rng.uniform(-1, 1) * ranges.shift_fraction[0],
        "shift_cols": rng.uniform(-1, 1) * ranges.shift_fraction[1],
        "count_fraction": rng.uniform(*ranges.count_fraction),
        "blur_px": rng.uniform(*ranges.blur_px),
    }


def thin_counts(counts: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson resampling at ``fraction`` of the counts (binomial thinning of the rounded counts)."""
    return rng.binomial(np.rint(counts).astype(np.int64), fraction).astype(np.float32)


def affine_blur(counts: torch.Tensor, params: list[dict]) -> torch.Tensor:
    """The deterministic part of augmentation for a batch ``(B, V, H, W)``: pose change, then blur."""
    batch, views, rows, cols = counts.shape
    theta = torch.zeros(batch, 2, 3)
    for index, p in enumerate(params):
        angle = np.deg2rad(p["rotation_deg"])
        # Rotate in pixel units (rows and columns have the same physical size on the default grids),
        # expressed in grid_sample's normalised coordinates; theta maps output to input positions.
        aspect = rows / cols
        c, s = np.cos(angle) / p["scale"], np.sin(angle) / p["scale"]
        theta[index] = torch.tensor([[c, -s * aspect, -2 * p["shift_cols"]],
                                     [s / aspect, c, -2 * p["shift_rows"]]])
    grid = F.affine_grid(theta, list(counts.shape), align_corners=False)
    moved = F.grid_sample(counts, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sigmas = torch.tensor([p["blur_px"] for p in params], dtype=torch.float32)
    return gaussian_blur(moved, sigmas)


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, V, H, W)`` with one sigma (pixels) per batch item."""
    batch, views, rows, cols = images.shape
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernels = torch.exp(-0.5 * (offsets[None] / sigmas.clamp_min(1e-3)[:, None]) ** 2)
    kernels = kernels / kernels.sum(1, keepdim=True)  # sigma -> 0 gives the identity kernel
    kernels = kernels.repeat_interleave(views, 0)  # one per (item, view) channel
    flat = images.reshape(1, batch * views, rows, cols)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius)), kernels[:, None, :, None], groups=batch * views)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0)), kernels[:, None, None, :], groups=batch * views)
    return flat.reshape(batch, views, rows, cols)


class TrainingStream:
    """The stream of (row, copy) items a strategy feeds to training, addressed by optimizer step.

    Items are the training rows expanded by the strategy's copies; each pass is a fresh permutation drawn
    from ``(seed, pass)``, and step ``s`` takes stream positions ``[s * batch, (s + 1) * batch)``. A batch
    is therefore a pure function of the step, so a resumed run continues exactly without replaying data.
    """

    def __init__(self, labels: np.ndarray, strategy: Strategy, batch_size: int, seed: int,
                 ranges: AugmentRanges = AugmentRanges()):
        self.strategy, self.batch_size, self.seed, self.ranges = strategy, batch_size, seed, ranges
        copies = np.where(np.asarray(labels) > 0, strategy.positive_copies, strategy.negative_copies)
        self.rows = np.repeat(np.arange(len(labels)), copies)
        self.copies = np.concatenate([np.arange(c) for c in copies]) if len(copies) else np.zeros(0, int)
        if len(self.rows) == 0:
            raise BadInputError("empty training set")

    def __len__(self):
        """Items in one pass over the (expanded) training set."""
        return len(self.rows)

    def steps_per_pass(self) -> int:
        return -(-len(self) // self.batch_size)

    def batch_items(self, step: int) -> list[tuple[int, int, int]]:
        """(row, copy, pass) of each item of the batch of optimizer step ``step``."""
        positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        items = []
        for pass_index in np.unique(positions // len(self)):
            order = np.random.default_rng([self.seed, 7, int(pass_index)]).permutation(len(self))
            offsets = positions[positions // len(self) == pass_index] % len(self)
            items += [(int(self.rows[order[o]]), int(self.copies[order[o]]), int(pass_index)) for o in offsets]
        return items

    def batch(self, counts: np.ndarray, step: int) -> tuple[torch.Tensor, np.ndarray]:
        """Grid counts of a step's batch, augmented as the strategy says, and the row of each item."""
        items = self.batch_items(step)
        rows = np.array([row for row, _, _ in items])
        out, params = [], []
        for row, copy, pass_index in items:
            if copy > 0:  # a fixed offline copy: depends on (seed, row, copy) only
                rng = np.random.default_rng([self.seed, 11, row, copy])
            elif self.strategy.online_augmentation:  # a fresh draw each pass
                rng = np.random.default_rng([self.seed, 13, row, pass_index])
            else:
                out.append(np.asarray(counts[row], np.float32))
                params.append(None)
                continue
            p = draw_params(rng, self.ranges)
            out.append(thin_counts(counts[row], p["count_fraction"], rng))
            params.append(p)
        batch = torch.from_numpy(np.stack(out))
        augmented = [i for i, p in enumerate(params) if p is not None]
        if augmented:
            batch[augmented] = affine_blur(batch[augmented], [params[i] for i in augmented])
        return batch, rows
