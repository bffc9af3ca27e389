"""The generator as one object: autoencoder + EDM latent denoiser + what sampling needs to make counts.

Saved like a diffusers model (one folder): ``model.safetensors`` (every weight, prefixed ``autoencoder.`` and
``denoiser.``) and ``config.json`` (networks, latent statistics, count distributions per class, the grid
and field of view, sampler defaults and the full training config). ``SynthscanModel.from_pretrained(folder)``
restores everything needed to sample; nothing is pickled and no class is named by a string.

The model hash is the SHA-256 of ``model.safetensors`` (``sha256sum`` gives the same); its first 8 hex
digits go into synthetic study ids (``syn-<hash8>-<condition>[-g<grade>]-<seed:06d>``).

Randomness per sample (seed s, DESIGN.md section 5): the initial latent noise comes from
``torch.Generator().manual_seed(s)``; everything else (amyloid grade when drawn, total counts, Poisson
counts) from ``numpy.random.default_rng(SeedSequence(s, spawn_key=(1,)))``, in that order. A sample thus
depends on its seed only, never on the batch it was generated in.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path
from synthscan.model.autoencoder import Autoencoder
from synthscan.model.conditions import CLASS_NAMES, DRAWN_AMYLOID_GRADES, NUM_CLASSES, folder_name
from synthscan.model.folder import CONFIG, FORMAT, WEIGHTS, file_hash, read_model_config
from synthscan.model.precond import EDMDenoiser, build_unet, karras_sigmas
from synthscan.model.guidance import Guidance
from synthscan.model.sampler import SOLVERS, guided
from synthscan.preprocess import expected_counts

NUMPY_STREAM = 1  # spawn key of the numpy stream of a sample (the torch stream is the plain seed)


def sample_rng(seed: int) -> np.random.Generator:
    """The numpy generator of one sample (grade, total counts, Poisson counts)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(NUMPY_STREAM,)))


def sample_noise(seeds, shape) -> torch.Tensor:
    """Initial unit-variance latent noise ``(len(seeds), *shape)``, one generator per seed."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds])


class SynthscanModel(nn.Module):
    """Autoencoder and denoiser plus the statistics that turn a latent into clinical counts.

    ``info`` (saved in config.json) holds: ``views``, ``grid`` (rows, cols), ``field_of_view_mm``,
    ``matrix`` (native clinical matrix), ``latent_mean``/``latent_std`` per channel, ``total_counts``
    (per class name: quantiles at 0, 1, ..., 100 %), ``class_counts`` (training scans per class), ``sampler``
    defaults, ``training`` (the resolved training config) and ``data`` (a summary of the training data).
    """

    def __init__(self, autoencoder: Autoencoder, denoiser: EDMDenoiser, info: dict):
        super().__init__()
        self.autoencoder = autoencoder
        self.denoiser = denoiser
        self.info = dict(info)
        self.register_buffer("latent_mean", torch.tensor(info["latent_mean"], dtype=torch.float32).reshape(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("latent_std", torch.tensor(info["latent_std"], dtype=torch.float32).reshape(1, -1, 1, 1),
                             persistent=False)
        self.hash = None
        self.precision = "fp32"

    def to_device(self, device, precision: str = "fp32") -> "SynthscanModel":
        """Networks on ``device`` ("cpu", "cuda", "cuda:1"); with ``precision`` "bf16" (else "fp32") sampling runs
        them under ``torch.autocast`` in bfloat16 (the ODE solver state, counts and Poisson draws stay float32)."""
        self.precision = precision
        return self.to(device)

    @property
    def device(self) -> torch.device:
        return self.latent_std.device

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------------------------ building

    @staticmethod
    def build_networks(views: int, grid, autoencoder_config: dict, denoiser_config: dict):
        """Fresh (randomly initialised) networks from the config sections."""
        autoencoder = Autoencoder(views=views, channels=autoencoder_config["channels"],
                                  latent_channels=autoencoder_config["latent_channels"],
                                  norm_groups=autoencoder_config["norm_groups"],
                                  decoder_blocks=autoencoder_config["decoder_blocks"])
        factor = autoencoder.downsampling
        latent_shape = (grid[0] // factor, grid[1] // factor)
        network = build_unet(autoencoder_config["latent_channels"], latent_shape,
                             channels=denoiser_config["channels"], layers_per_block=denoiser_config["layers_per_block"],
                             attention=denoiser_config["attention"], norm_groups=denoiser_config["norm_groups"],
                             num_classes=NUM_CLASSES)
        return autoencoder, EDMDenoiser(network, denoiser_config["sigma_data"])

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        factor = self.autoencoder.downsampling
        grid = self.info["grid"]
        return self.autoencoder.config["latent_channels"], grid[0] // factor, grid[1] // factor

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(self.info["views"])

    # ------------------------------------------------------------------------------------ sampling

    @torch.no_grad()
    def generate_latents(self, seeds, class_ids, steps: int, guidance: Guidance, solver: str) -> torch.Tensor:
        """Standardised latents of one batch by solving the probability-flow ODE from per-seed noise."""
        sampler = self.info["sampler"]
        sigmas = karras_sigmas(steps, sampler["sigma_min"], sampler["sigma_max"], sampler["rho"])
        noise = sample_noise(seeds, self.latent_shape).to(self.device)  # drawn on the CPU: the same on any device
        labels = torch.as_tensor(list(class_ids), dtype=torch.long, device=self.device)
        with self._autocast():
            return SOLVERS[solver](guided(self.denoiser, labels, guidance), noise * sigmas[0], sigmas)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Standardised latents -> network intensities y on the canonical grid (float32, on the model's device)."""
        with self._autocast():
            return self.autoencoder.decode(latents * self.latent_std + self.latent_mean).float()

    @torch.no_grad()
    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Network intensities y -> standardised latents (float32, on the model's device; for the audit)."""
        return (self.autoencoder.encode(y.to(self.device)) - self.latent_mean) / self.latent_std

    def draw_total_counts(self, class_id: int, rng: np.random.Generator) -> float:
        """A total count (all views) from the training distribution of the class (inverse CDF)."""
        table = self.info["total_counts"]
        quantiles = np.asarray(table.get(CLASS_NAMES[class_id]) or table["all"], dtype=np.float64)
        return float(np.interp(rng.random() * 100, np.linspace(0, 100, len(quantiles)), quantiles))

    def draw_amyloid_grade(self, rng: np.random.Generator) -> int:
        """Grade 2 or 3 in proportion to their training frequencies (DESIGN.md: amyloidosis without --grade)."""
        counts = self.info["class_counts"]
        low, high = DRAWN_AMYLOID_GRADES
        weights = np.array([counts.get(folder_name("amyloidosis", g), 0) for g in (low, high)], dtype=float)
        weights = weights / weights.sum() if weights.sum() > 0 else np.array([0.5, 0.5])
        return low if rng.random() < weights[0] else high

    @torch.no_grad()
    def expected_counts(self, seeds, class_ids, total_counts, matrix, guidance: Guidance, steps: int | None = None,
                        solver: str | None = None) -> torch.Tensor:
        """Expected counts ``(B, V, *matrix)`` of one batch (float32, on the CPU), each summing to its total count."""
        sampler = self.info["sampler"]
        latents = self.generate_latents(seeds, class_ids, steps or sampler["steps"], guidance,
                                        solver or sampler["solver"])
        return expected_counts(self.decode(latents), total_counts, matrix).cpu()

    def output_spacing_mm(self, matrix) -> tuple[float, float]:
        """Pixel spacing at ``matrix`` that keeps the training field of view."""
        field = self.info["field_of_view_mm"]
        return field[0] / matrix[0], field[1] / matrix[1]

    # ------------------------------------------------------------------------------------ saving

    def save_pretrained(self, folder, dtype: str = "float32") -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder`` (each atomically); return the folder."""
        from safetensors.torch import save_file

        folder = Path(folder)
        cast = {"float32": torch.float32, "float16": torch.float16}[dtype]
        tensors = {name: tensor.detach().to("cpu", cast).contiguous() for name, tensor in self.state_dict().items()}
        config = {"format": FORMAT, "weights_dtype": dtype, "autoencoder": self.autoencoder.config,
                  "denoiser": {"sigma_data": self.denoiser.sigma_data, "unet": dict(self.denoiser.network.config)},
                  **self.info}
        config["denoiser"]["unet"] = _jsonable(config["denoiser"]["unet"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / WEIGHTS).unlink(missing_ok=True)  # a folder with model.safetensors is complete: weights last
        with atomic_path(folder / CONFIG) as tmp:
            tmp.write_text(json.dumps(config, indent=2) + "\n")
        with atomic_path(folder / WEIGHTS) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        self.hash = file_hash(folder / WEIGHTS)
        return folder

    @classmethod
    def from_pretrained(cls, folder) -> "SynthscanModel":
        """Load a saved model (weights cast to float32 for CPU inference); BadInputError if it is not one."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config = read_model_config(folder)
        try:
            autoencoder = Autoencoder(**config["autoencoder"])
            unet_config = dict(config["denoiser"]["unet"])
            from diffusers import UNet2DModel

            network = UNet2DModel.from_config(unet_config)
            denoiser = EDMDenoiser(network, config["denoiser"]["sigma_data"])
            info = {k: v for k, v in config.items() if k not in ("format", "weights_dtype", "autoencoder", "denoiser")}
            model = cls(autoencoder, denoiser, info)
            tensors = load_file(str(folder / WEIGHTS))
            model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()}, strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise BadInputError(f"not a loadable synthscan model ({type(error).__name__}: {error})", folder) from None
        model.hash = file_hash(folder / WEIGHTS)
        return model.eval().requires_grad_(False)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
