"""Generator configuration: frozen dataclasses loaded from ``recipes/*.toml``.

Precedence: dataclass defaults < ``--recipe`` < ``--config`` < ``--set section.key=value`` flags. An unknown
section or key is an error that names the file and the key (a typo must never silently fall back to a
default). The resolved config is written to every run folder (``config.toml``), into every checkpoint and
into the model's ``config.json``, so a model can always say how it was made.

Sections (one dataclass each, see the fields for meaning and units):
``[data]`` canonical grid, ``[autoencoder]`` network, ``[denoiser]`` network and EDM noise distribution,
``[perceptual]`` critic and weight of the perceptual fine-tuning, ``[train_autoencoder]`` / ``[train_perceptual]``
/ ``[train_denoiser]`` / ``[train_decoder]`` optimisation, ``[sampler]`` defaults used by ``synthscan sample``,
plus top-level ``seed``, checkpointing and precision keys.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from synthscan.errors import BadInputError
from synthscan.model.conditions import AMYLOID_CLASSES, CONDITIONS, NEGATIVE_CONDITIONS, is_negative_for
from synthscan.model.guidance import interval_ok


@dataclass(frozen=True)
class DataConfig:
    """Canonical grid every scan is resampled to before it reaches a network (synthscan/preprocess.py)."""

    rows: int = 256
    cols: int = 64
    max_scans: int = 0  # 0 = every manifest row; >0 keeps the first N (quick experiments)


@dataclass(frozen=True)
class AutoencoderConfig:
    """Convolutional autoencoder (synthscan/model/autoencoder.py): channels per resolution level, coarse last."""

    channels: tuple[int, ...] = (16, 32, 64)  # per level, finest first; the latent is 2**levels times smaller
    latent_channels: int = 4
    decoder_blocks: int = 1  # residual blocks per level in the decoder
    refined_decoder_blocks: int = 0  # stage decoder grows the decoder to this many blocks per level (0: no growth)
    latent_penalty: float = 1e-4  # weight of the latent L2 term (keeps latents small and well scaled)
    latent_noise: float = 0.1  # decoder trained on latents + this x their std x N(0, 1)
    norm_groups: int = 8


@dataclass(frozen=True)
class DenoiserConfig:
    """Latent UNet (diffusers UNet2DModel) and the EDM noise parameters (Karras et al. 2022, Table 1)."""

    channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention: bool = True  # self-attention at the coarsest level
    norm_groups: int = 8
    sigma_data: float = 0.5  # latents are standardised to this std
    p_mean: float = -1.2  # log-normal training noise distribution
    p_std: float = 1.2
    condition_dropout: float = 0.1  # share of steps trained on the null class (classifier-free guidance)


@dataclass(frozen=True)
class PerceptualConfig:
    """Autoencoder fine-tuning with a perceptual loss (synthscan/train.py: the critic, then stage ``perceptual``).

    A scan classifier (synthscan/model/critic.py) is fitted to the training labels; the autoencoder is then
    fine-tuned, before the denoiser learns its latents, on L1 plus ``weight`` x the relative L1 distance between
    the critic's activation maps of the reconstruction (with count noise added) and of the scan. Off while
    ``train_perceptual.steps`` is 0. Stage ``decoder`` (``train_decoder.steps`` > 0), after the denoiser, trains
    the decoder alone on the same loss, grown to ``autoencoder.refined_decoder_blocks`` blocks per level; the
    encoder is frozen, so the latents the denoiser learnt stay valid.
    """

    width: int = 16  # critic channels at its first stage (x2 per stage)
    weight: float = 0.1
    epochs: int = 10  # critic training (synthscan/model/critic.py fit_classifier, as the fidelity judge's)
    batch_size: int = 32
    lr: float = 2e-3
    thinning: float = 0.3  # augmentation: each scan keeps a random share in [thinning, 1] of its counts


@dataclass(frozen=True)
class StageConfig:
    """Optimisation of one training stage."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # global batch (all processes, all accumulation micro-batches)
    gradient_accumulation_steps: int = 1
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    ema_decay: float = 0.999  # 0 disables EMA (the trained weights are used as they are)
    crop_rows: int = 0  # autoencoder and perceptual stages: random row bands of this height (0 = whole scan)


@dataclass(frozen=True)
class SamplerConfig:
    """Defaults of ``synthscan sample`` (synthscan/model/sampler.py)."""

    solver: str = "dpmpp_2m"  # or "heun"
    steps: int = 10
    guidance_scale: float = 1.0  # 1 = plain conditional model (no extra unconditional pass)
    condition_guidance: dict[str, float] = field(default_factory=dict)  # per condition or amyloid grade
    # ("amyloidosis-g3"), instead of guidance_scale
    negative_condition: dict[str, str] = field(default_factory=dict)  # condition -> condition to guide away from
    negative_scale: float = 0.0  # weight of the negative condition (0: none)
    guidance_interval: tuple[float, ...] = ()  # noise levels (lo, hi] where guidance applies; (): all
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``synthscan train`` needs besides the data manifest and the output folder."""

    seed: int = 0
    mixed_precision: str = "auto"  # "auto": bf16 on CUDA, fp32 on CPU; or "no" / "bf16" / "fp16"
    checkpoint_every: int = 200  # optimizer steps between checkpoints (per stage)
    keep_checkpoints: int = 2
    save_dtype: str = "float32"  # weights dtype in the saved model ("float16" for the bundled model)
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    train_autoencoder: StageConfig = field(default_factory=lambda: StageConfig(
        steps=2000, batch_size=16, lr=2e-3, crop_rows=128, ema_decay=0.0))
    train_denoiser: StageConfig = field(default_factory=lambda: StageConfig(
        steps=4000, batch_size=128, lr=2e-3, ema_decay=0.999))
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    train_perceptual: StageConfig = field(default_factory=lambda: StageConfig(
        steps=0, batch_size=16, lr=3e-4, ema_decay=0.0))
    train_decoder: StageConfig = field(default_factory=lambda: StageConfig(  # after the denoiser; 0 steps: off
        steps=0, batch_size=16, lr=3e-4, ema_decay=0.0))
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self):
        interval = self.sampler.guidance_interval
        checks = [
            (self.mixed_precision in ("auto", "no", "bf16", "fp16"), "mixed_precision must be auto, no, bf16 or fp16"),
            (self.save_dtype in ("float32", "float16"), "save_dtype must be float32 or float16"),
            (self.checkpoint_every >= 1 and self.keep_checkpoints >= 1, "checkpoint_every and keep_checkpoints must be >= 1"),
            (self.sampler.solver in ("dpmpp_2m", "heun"), "sampler.solver must be dpmpp_2m or heun"),
            (self.sampler.steps >= 1, "sampler.steps must be >= 1"),
            (self.sampler.guidance_scale >= 0, "sampler.guidance_scale must be >= 0"),
            (set(self.sampler.condition_guidance) <= set(CONDITIONS) | set(AMYLOID_CLASSES) and all(
                g >= 0 for g in self.sampler.condition_guidance.values()),
             f"sampler.condition_guidance takes {', '.join(CONDITIONS + AMYLOID_CLASSES)} with scales >= 0"),
            (set(self.sampler.negative_condition) <= set(CONDITIONS) and all(
                is_negative_for(k, v) for k, v in self.sampler.negative_condition.items()),
             f"sampler.negative_condition maps {', '.join(CONDITIONS)} to another condition of "
             f"{', '.join(NEGATIVE_CONDITIONS)}"),
            (self.sampler.negative_scale >= 0, "sampler.negative_scale must be >= 0"),
            (interval == () or interval_ok(interval),
             "sampler.guidance_interval must be [] or [lo, hi] with 0 <= lo < hi"),
            (0 < self.sampler.sigma_min < self.sampler.sigma_max, "need 0 < sampler.sigma_min < sampler.sigma_max"),
            (0 <= self.denoiser.condition_dropout < 1, "denoiser.condition_dropout must be in [0, 1)"),
            (len(self.autoencoder.channels) >= 1 and len(self.denoiser.channels) >= 1, "channels must not be empty"),
            (all(c % self.autoencoder.norm_groups == 0 for c in self.autoencoder.channels),
             "autoencoder.channels must be multiples of autoencoder.norm_groups"),
            (all(c % self.denoiser.norm_groups == 0 for c in self.denoiser.channels),
             "denoiser.channels must be multiples of denoiser.norm_groups"),
        ]
        factor = 2 ** len(self.autoencoder.channels)
        checks.append((self.data.rows % factor == 0 and self.data.cols % factor == 0,
                       f"data grid {self.data.rows}x{self.data.cols} must be divisible by the autoencoder's "
                       f"downsampling factor {factor}"))
        latent_factor = 2 ** (len(self.denoiser.channels) - 1)
        checks.append(((self.data.rows // factor) % latent_factor == 0 and (self.data.cols // factor) % latent_factor == 0,
                       f"latent grid {self.data.rows // factor}x{self.data.cols // factor} must be divisible by "
                       f"the denoiser's downsampling factor {latent_factor}"))
        refined = self.autoencoder.refined_decoder_blocks
        checks.append((refined == 0 or refined >= self.autoencoder.decoder_blocks,
                       "autoencoder.refined_decoder_blocks must be 0 or >= autoencoder.decoder_blocks"))
        for name in ("train_autoencoder", "train_perceptual", "train_decoder"):
            crop = getattr(self, name).crop_rows
            checks.append((crop == 0 or (crop % factor == 0 and crop <= self.data.rows),
                           f"{name}.crop_rows={crop} must be 0 or a multiple of {factor} <= data.rows"))
        p = self.perceptual
        checks += [(p.width >= 1 and p.epochs >= 1 and p.batch_size >= 2, "perceptual.width and epochs must be >= 1, "
                    "batch_size >= 2"), (p.weight >= 0, "perceptual.weight must be >= 0"),
                   (0 < p.thinning <= 1, "perceptual.thinning must be in (0, 1]")]
        for name in ("train_autoencoder", "train_perceptual", "train_denoiser", "train_decoder"):
            stage = getattr(self, name)
            checks += [
                (stage.steps >= 0, f"{name}.steps must be >= 0"),
                (stage.gradient_accumulation_steps >= 1, f"{name}.gradient_accumulation_steps must be >= 1"),
                (stage.batch_size >= 1, f"{name}.batch_size must be >= 1"),
                (0 <= stage.ema_decay < 1, f"{name}.ema_decay must be in [0, 1)"),
            ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(f"config: {message}")


# ------------------------------------------------------------------------------------------ loading


def _coerce(value: Any, kind, where: str):
    """Check a TOML value against a dataclass field type (ints may stand for floats; lists become tuples)."""
    origin = getattr(kind, "__origin__", None)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif origin is dict:  # condition -> number or condition -> condition
        numbers = kind.__args__[1] is float
        ok = isinstance(value, dict) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) if numbers else isinstance(v, str)
            for v in value.values())
        value = {str(k): float(v) if numbers else v for k, v in value.items()} if ok else value
    elif origin is tuple:
        numbers = (int, float) if kind.__args__[0] is float else int
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, numbers) and not isinstance(v, bool) for v in value)
        value = tuple(kind.__args__[0](v) for v in value) if ok else value
    else:  # pragma: no cover - every field type is listed above
        raise TypeError(f"unsupported config field type {kind}")
    if not ok:
        raise BadInputError(f"{where}: expected {getattr(kind, '__name__', str(kind))}, got {value!r}")
    return value


def merge(config, overrides: dict, source: str = "config"):
    """A copy of a config dataclass with a nested dict of overrides applied; unknown keys raise."""
    _check_keys(type(config), overrides, source)
    return _build(type(config), deep_update(to_dict(config), overrides), source)


def _build(kind, table: dict, source: str):
    hints = get_type_hints(kind)
    values = {}
    for key, value in table.items():
        values[key] = (_build(hints[key], value, f"{source}: {key}") if is_dataclass(hints[key])
                       else _coerce(value, hints[key], f"{source}: {key}"))
    return kind(**values)


REPRODUCE_TABLE = "reproduce"


def read_toml(path, what: str = "config file") -> dict:
    """A TOML file as a dict; a missing or unparsable file is a ``BadInputError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} not found", path)
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise BadInputError(f"not valid TOML ({error})", path) from None


def parse_set(assignments) -> dict:
    """``["train_denoiser.steps=10", "seed=3"]`` -> nested dict; values parsed as TOML (strings may be bare)."""
    nested: dict = {}
    for text in assignments or ():
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"--set expects section.key=value, got {text!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        *sections, leaf = key.strip().split(".")
        table = nested
        for section in sections:
            table = table.setdefault(section, {})
        table[leaf] = value
    return nested


def deep_update(base: dict, overrides: dict) -> dict:
    """A copy of nested dict ``base`` with ``overrides`` applied key by key."""
    result = dict(base)
    for key, value in overrides.items():
        result[key] = deep_update(result[key], value) if isinstance(value, dict) and isinstance(
            result.get(key), dict) else value
    return result


def load_config(recipe=None, config=None, overrides=None) -> TrainConfig:
    """Defaults < recipe TOML < config TOML < ``overrides`` (a nested dict, e.g. from :func:`parse_set`).

    Every layer is checked on its own (so an error names its file), then the layers are combined and
    validated once (a recipe may set a value that only the next layer makes consistent).
    """
    # a recipe may also carry a [reproduce] table: the paper experiment's settings (evaluation/reproduce.py)
    layers = [({k: v for k, v in read_toml(path).items() if k != REPRODUCE_TABLE}, str(path))
              for path in (recipe, config) if path is not None]
    if overrides:
        layers.append((overrides, "--set"))
    combined: dict = {}
    for table, source in layers:
        _check_keys(TrainConfig, table, source)
        combined = deep_update(combined, table)
    return merge(TrainConfig(), combined, "config")


def _check_keys(kind, table: dict, source: str) -> None:
    hints = get_type_hints(kind)
    names = {f.name for f in fields(kind)}
    for key, value in table.items():
        where = f"{source}: {key}"
        if key not in names:
            raise BadInputError(f"{where}: unknown key (known: {', '.join(sorted(names))})")
        if is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise BadInputError(f"{where}: expected a [{key}] table, got {value!r}")
            _check_keys(hints[key], value, f"{source}: {key}")
        else:
            _coerce(value, hints[key], where)


def to_dict(config) -> dict:
    """Plain nested dict (tuples as lists), for TOML/JSON."""
    return {f.name: (to_dict(v) if is_dataclass(v := getattr(config, f.name)) else
                     list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, dict) else v) for f in fields(config)}


def from_dict(data: dict) -> TrainConfig:
    """Inverse of :func:`to_dict` (e.g. a config read back from a model's config.json)."""
    return merge(TrainConfig(), data, "stored config")


def to_toml(config) -> str:
    """The config as TOML text (scalars first, then one table per section)."""
    data = to_dict(config)
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)
