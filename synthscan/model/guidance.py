"""Sampler guidance settings of one run: the model's per-condition defaults (config.json ``sampler``) with the
user's overrides. Torch-free, so that ``synthscan sample`` validates them before any worker starts; the
sampler (synthscan/model/sampler.py ``guided``) applies them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from synthscan.errors import BadInputError
from synthscan.model.conditions import class_for, folder_name


@dataclass(frozen=True)
class Guidance:
    """How a sampler mixes the denoiser's conditional, null and negative predictions (see ``sampler.guided``)."""

    scale: float = 1.0  # w: 1 = the plain conditional model, 0 = the unconditional one
    negative_class: int | None = None  # class guided away from (None: none)
    negative_scale: float = 0.0  # v
    interval: tuple[float, float] | None = None  # noise levels (lo, hi] where guidance applies (None: all)


def interval_ok(interval) -> bool:
    """A guidance interval is two noise levels 0 <= lo < hi."""
    return len(interval) == 2 and 0 <= interval[0] < interval[1]


def guidance_scale(sampler: dict, condition: str, grade: int | None = None) -> float:
    """Default guidance scale of ``condition`` (of amyloid ``grade``): ``condition_guidance`` where it names the
    grade ("amyloidosis-g3") or else the condition, otherwise ``guidance_scale``."""
    scales = sampler.get("condition_guidance", {})
    return float(scales.get(folder_name(condition, grade), scales.get(condition, sampler["guidance_scale"])))


def negative_guidance(sampler: dict, condition: str, negative: str | None = None,
                      scale: float | None = None) -> tuple[str | None, float]:
    """(negative condition or None, its scale) for sampling ``condition``: ``negative`` ("none": off) and
    ``scale`` (0: off) where given, else the model's ``negative_condition`` / ``negative_scale``."""
    default_scale = float(sampler.get("negative_scale", 0.0))
    if negative is None and default_scale > 0:
        negative = sampler.get("negative_condition", {}).get(condition)
    if negative in (None, "none") or scale == 0:
        if scale:
            raise BadInputError(f"--negative-scale needs a negative condition: the model has none for {condition} "
                                "(give --negative-condition)")
        return None, 0.0
    scale = default_scale if scale is None else float(scale)
    if scale <= 0:
        raise BadInputError(f"negative condition {negative!r} needs --negative-scale > 0 (the model has no default)")
    return negative, scale


def resolve(sampler: dict, condition: str, scale: float | None = None, negative: str | None = None,
            negative_scale: float | None = None, interval: tuple[float, float] | None = None,
            grade: int | None = None) -> tuple[Guidance, str | None]:
    """(guidance, negative condition or None) of scans of ``condition`` (and amyloid ``grade``); None arguments
    take the model's defaults, and an interval ending at inf means every step."""
    scale = guidance_scale(sampler, condition, grade) if scale is None else float(scale)
    negative, negative_scale = negative_guidance(sampler, condition, negative, negative_scale)
    interval = tuple(interval or sampler.get("guidance_interval", ())) or None
    if interval is not None and interval[1] == math.inf:
        interval = None
    negative_class = None if negative is None else class_for(negative)
    return Guidance(scale, negative_class, negative_scale, interval), negative
