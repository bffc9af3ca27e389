"""Training of the generator with Accelerate: autoencoder, (optional) perceptual fine-tuning, EDM latent denoiser,
(optional) decoder refinement.

One command, up to four stages. Rombach et al. 2022: the autoencoder is trained first, then frozen while the
diffusion model learns its latents. When ``train_perceptual.steps`` > 0, a scan classifier (the critic) is
fitted to the training labels on the main process between the two, as the fidelity judge is but from another
seed, and the autoencoder is fine-tuned on L1 plus a perceptual loss in the critic's activations, as the
Stable Diffusion autoencoder pairs L1 with LPIPS. An L1-trained autoencoder smooths small hot spots (its loss
is dominated by count noise); the perceptual term keeps what a classifier of the labels attends to. The
encoder is fine-tuned too (it keeps more lesions than a decoder-only fine-tuning, benchmarks/RESULTS.md), so
the stage runs before the denoiser. When ``train_decoder.steps`` > 0, a last stage trains the decoder alone on
the same loss, grown to ``autoencoder.refined_decoder_blocks`` residual blocks per level (the new blocks start
as identities): the encoder is frozen, so the denoiser's latents stay valid, and a deeper decoder draws finer
structure from them (benchmarks/RESULTS.md). Each stage is an Accelerate loop in the manner of diffusers'
``train_unconditional.py``: ``Accelerator(gradient_accumulation_steps, mixed_precision)`` (bf16 on CUDA),
AdamW with linear warm-up and cosine decay (a pure function of the step), gradient clipping, an EMA of the
weights updated when ``sync_gradients`` (EMA decay warm-up as in diffusers' ``EMAModel``), ``save_state``
checkpoints every ``checkpoint_every`` optimizer steps with the last ``keep_checkpoints`` kept.

Resume: rerunning the same command continues from the newest checkpoint and ends with bitwise the same
weights as an uninterrupted run (on the same machine and process count). Nothing is replayed: the scans of a
batch, crops, noise levels, noise and condition dropout are pure functions of (seed, stage, step, micro-batch,
process), drawn from generators seeded by those numbers; the epoch order is a permutation seeded by
(seed, stage, epoch). The data are small canonical tensors held in memory, so there is no DataLoader to
prepare; each process takes its own slice of the global batch.

Data: the manifest's DICOM files are read once (synthscan.io.dicom.read_scan), resampled to the canonical
grid (synthscan/preprocess.py) and cached in ``RUN/cache/`` so that reruns and epochs never reread DICOM.

Run folder: ``config.toml`` (resolved config), ``run.json`` (data summary, processes, timings),
``loss_<stage>.csv`` and ``loss.png``, ``checkpoints/<stage>/step-NNNNNNN/`` (with config.toml inside),
``<stage>.safetensors`` (and ``critic.safetensors``) once a stage is done, and the final model:
``config.json`` + ``model.safetensors`` (synthscan/model/pipeline.py), so ``synthscan sample --model RUN``
works on the run folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from synthscan.config import TrainConfig, to_dict, to_toml
from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path, save_weights, write_text
from synthscan.model.conditions import CLASS_NAMES, NULL_CLASS, class_from_labels, judge_class_of
from synthscan.model.critic import ScanClassifier, fit_classifier
from synthscan.model.pipeline import SynthscanModel
from synthscan.preprocess import INTENSITY_REF, canonical_counts, to_network

STAGES = ("autoencoder", "perceptual", "denoiser", "decoder")  # in order; the index seeds each stage's randomness
REQUIRED_COLUMNS = ("study_id", "patient_id", "path", "views", "metastasis", "amyloid_grade")


# ------------------------------------------------------------------------------------------ data


def _file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_training_data(manifest, config: TrainConfig, cache_folder: Path, is_main: bool = True,
                       wait=lambda: None, progress: bool = True) -> dict:
    """Canonical counts, class ids and summary statistics of the manifest's scans (cached as .npz)."""
    from synthscan.io.manifest import read_manifest

    frame = read_manifest(manifest, required=REQUIRED_COLUMNS)
    if config.data.max_scans:
        frame = frame.head(config.data.max_scans)
    if len(frame) == 0:
        raise BadInputError("manifest has no rows", manifest)
    views = sorted(set(frame["views"].astype(str)))
    if len(views) != 1:
        raise BadInputError(f"the generator is trained for one set of views; manifest mixes {views}", manifest)
    key = hashlib.sha256(f"{_file_sha256(manifest)}|{config.data.rows}x{config.data.cols}|{len(frame)}".encode()
                         ).hexdigest()[:16]
    cache = cache_folder / f"canonical-{key}.npz"
    if is_main and not cache.is_file():
        _build_cache(frame, views[0], config, cache, progress)
    wait()
    with np.load(cache) as stored:
        data = {name: stored[name] for name in stored.files}
    data["views"] = tuple(views[0].split("+"))
    data["manifest_sha256"] = _file_sha256(manifest)
    data["sites"] = sorted(set(frame["site"].dropna().astype(str))) if "site" in frame else []
    data["tracers"] = sorted(set(frame["tracer"].dropna().astype(str))) if "tracer" in frame else []
    return data


def _build_cache(frame, views_value: str, config: TrainConfig, cache: Path, progress: bool) -> None:
    from tqdm import tqdm

    from synthscan.io.dicom import read_scan
    from synthscan.io.manifest import scan_path

    views = tuple(views_value.split("+"))
    n = len(frame)
    canonical = np.zeros((n, len(views), config.data.rows, config.data.cols), np.float32)
    totals, fields, matrices, classes = np.zeros(n), np.zeros((n, 2)), np.zeros((n, 2), int), np.zeros(n, int)
    rows = tqdm(enumerate(frame.index), total=n, desc="reading scans", unit="scan", disable=not progress)
    for i, index in rows:
        scan = read_scan(scan_path(frame, index), views=views)
        canonical[i] = canonical_counts(scan, config.data.rows, config.data.cols)
        totals[i] = scan.total_counts
        fields[i] = (scan.shape[0] * scan.pixel_spacing_mm[0], scan.shape[1] * scan.pixel_spacing_mm[1])
        matrices[i] = scan.shape
        classes[i] = class_from_labels(frame.at[index, "metastasis"], frame.at[index, "amyloid_grade"])
        if totals[i] <= 0:
            raise BadInputError(f"scan {frame.at[index, 'study_id']} has no counts", scan_path(frame, index))
    if (classes == NULL_CLASS).all():
        raise BadInputError("no scan has usable labels (metastasis and amyloid_grade) for any condition")
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, canonical=canonical, total_counts=totals, field_of_view_mm=fields, matrix=matrices,
                     class_ids=classes)


def data_summary(data: dict) -> dict:
    """What the model remembers of its training data: counts per class, count quantiles, geometry."""
    classes, totals = data["class_ids"], data["total_counts"]
    percent = np.linspace(0, 100, 101)
    total_counts = {"all": np.percentile(totals, percent).round(1).tolist()}
    class_counts = {}
    for class_id, name in enumerate(CLASS_NAMES):
        members = totals[classes == class_id]
        class_counts[name] = int(len(members))
        if class_id != NULL_CLASS and len(members) >= 5:
            total_counts[name] = np.percentile(members, percent).round(1).tolist()
    matrices, frequency = np.unique(data["matrix"], axis=0, return_counts=True)
    return {"views": list(data["views"]), "field_of_view_mm": np.median(data["field_of_view_mm"], axis=0).round(2).tolist(),
            "matrix": matrices[frequency.argmax()].tolist(), "total_counts": total_counts,
            "class_counts": class_counts,
            "data": {"n_scans": int(len(classes)), "sites": data["sites"], "tracers": data["tracers"],
                     "manifest_sha256": data["manifest_sha256"]}}


# ------------------------------------------------------------------------------------------ schedules


def learning_rate(stage, step: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < stage.warmup_steps:
        return stage.lr * (step + 1) / stage.warmup_steps
    progress = (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps)
    return stage.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def step_generator(seed: int, stage: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The generator of one micro-batch: crops, noise levels, noise, condition dropout."""
    state = np.random.SeedSequence([seed, stage, step, micro, rank]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def batch_indices(seed: int, stage: int, n: int, start: int, size: int) -> np.ndarray:
    """Scans at positions [start, start + size) of the endless stream of per-epoch permutations."""
    positions = np.arange(start, start + size)
    epochs = positions // n
    out = np.empty(size, np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([seed, stage, int(epoch)]).permutation(n)
        mask = epochs == epoch
        out[mask] = order[positions[mask] % n]
    return out


class EMA:
    """Exponential moving average of a model's parameters; decay warms up as min(decay, (1+t)/(10+t))."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[name].lerp_(value.detach().float(), 1 - decay)
            else:
                self.shadow[name].copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}


# ------------------------------------------------------------------------------------------ training


class Run:
    """A run folder: config check, checkpoints, loss logs."""

    def __init__(self, folder, config: TrainConfig):
        self.folder = Path(folder)
        self.config = config

    def checkpoints(self, stage: str) -> list[Path]:
        return sorted((self.folder / "checkpoints" / stage).glob("step-*"))

    def check_config(self) -> None:
        saved = self.folder / "config.toml"
        if saved.is_file() and saved.read_text() != to_toml(self.config):
            raise BadInputError("run folder holds a run with a different config; use a new --out or the same "
                                "recipe and flags", self.folder)

    def log_loss(self, stage: str, rows) -> None:
        path = self.folder / f"loss_{stage}.csv"
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "loss", "lr"])
            writer.writerows(rows)

    def truncate_loss(self, stage: str, last_step: int) -> None:
        path = self.folder / f"loss_{stage}.csv"
        if path.exists():
            lines = path.read_text().splitlines()
            kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",")[0]) <= last_step]
            write_text(path, "\n".join(kept) + "\n")


def _make_accelerator(config: TrainConfig, stage):
    from accelerate import Accelerator

    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    return Accelerator(gradient_accumulation_steps=stage.gradient_accumulation_steps, mixed_precision=precision,
                       cpu=not torch.cuda.is_available())  # cpu=True lets torchrun start gloo CPU processes


def train_stage(run: Run, name: str, model: torch.nn.Module, loss_fn, n_items: int, progress: bool = True):
    """One Accelerate training loop with checkpoints and resume; returns (trained model, EMA or None)."""
    from tqdm import tqdm

    config = run.config
    stage = getattr(config, f"train_{name}")
    stage_index = STAGES.index(name)
    accelerator = _make_accelerator(config, stage)
    world, rank = accelerator.num_processes, accelerator.process_index
    per_micro = stage.batch_size // (world * stage.gradient_accumulation_steps)
    if per_micro * world * stage.gradient_accumulation_steps != stage.batch_size or per_micro < 1:
        raise BadInputError(f"train_{name}.batch_size={stage.batch_size} must be a multiple of processes "
                            f"({world}) x gradient_accumulation_steps ({stage.gradient_accumulation_steps})")
    optimizer = torch.optim.AdamW(model.parameters(), lr=stage.lr, weight_decay=stage.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema = EMA(accelerator.unwrap_model(model), stage.ema_decay) if stage.ema_decay > 0 else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    start = 0
    existing = run.checkpoints(name)
    if existing:
        accelerator.load_state(str(existing[-1]))
        start = int(existing[-1].name.split("-")[1])
        if accelerator.is_main_process:
            run.truncate_loss(name, start - 1)
    bar = tqdm(total=stage.steps, initial=start, desc=f"training {name}", unit="step", mininterval=0, miniters=1,
               disable=not (progress and accelerator.is_main_process))  # every step shown: steps take >= ms
    pending, began = [], time.time()
    model.train()
    for step in range(start, stage.steps):
        lr = learning_rate(stage, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = []
        for micro in range(stage.gradient_accumulation_steps):
            offset = step * stage.batch_size + (micro * world + rank) * per_micro
            indices = batch_indices(config.seed, stage_index, n_items, offset, per_micro)
            generator = step_generator(config.seed, stage_index, step, micro, rank)
            with accelerator.accumulate(model):
                loss = loss_fn(model, indices, generator, accelerator.device)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        if ema is not None and accelerator.sync_gradients:
            ema.update(accelerator.unwrap_model(model), step)
        mean_loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
        pending.append((step, f"{mean_loss:.6g}", f"{lr:.6g}"))
        bar.update(1)
        bar.set_postfix(loss=f"{mean_loss:.4f}")
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < stage.steps:
            if accelerator.is_main_process:
                run.log_loss(name, pending)
            pending = []
            _save_checkpoint(run, accelerator, name, step + 1)
    bar.close()
    if accelerator.is_main_process:
        run.log_loss(name, pending)
    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(model)
    if ema is not None:
        trained.load_state_dict(ema.shadow)
    accelerator.free_memory()
    return trained.eval(), {"steps": stage.steps, "resumed_from": start, "seconds": round(time.time() - began, 1),
                            "num_processes": world}


def _save_checkpoint(run: Run, accelerator, name: str, step: int) -> None:
    folder = run.folder / "checkpoints" / name
    target = folder / f"step-{step:07d}"
    staging = folder / f".step-{step:07d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / "config.toml").write_text(to_toml(run.config))
        os.replace(staging, target)
        for old in run.checkpoints(name)[:-run.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


class AutoencoderForTraining(torch.nn.Module):
    """Encode, jitter the latent, decode: one forward call, so that DDP sees (and syncs) every parameter."""

    def __init__(self, autoencoder):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, batch, noise, latent_noise: float):
        latents = self.autoencoder.encode(batch)
        reconstruction = self.autoencoder.decode(latents + latent_noise * latents.detach().std() * noise)
        return reconstruction, latents


def autoencoder_loss(images: torch.Tensor, config: TrainConfig, crop: int, critic=None, sigma=None):
    """L1 reconstruction of (a random row band of) the scans plus the latent L2 penalty. With a ``critic``
    (stage ``perceptual``), plus ``perceptual.weight`` x the relative L1 distance between the critic's stage
    activations of the reconstruction, with count noise of the scan's level ``sigma`` added (the critic learnt
    noisy scans), and of the scan."""
    settings = config.autoencoder
    factor = 2 ** len(settings.channels)

    def loss_fn(model, indices, generator, device):
        index = torch.from_numpy(indices)
        batch = images[index]
        if crop and crop < batch.shape[-2]:
            starts = torch.randint(0, (batch.shape[-2] - crop) // factor + 1, (len(indices),), generator=generator)
            batch = torch.stack([b[:, s * factor: s * factor + crop] for b, s in zip(batch, starts.tolist())])
        noise = torch.randn((batch.shape[0], settings.latent_channels, batch.shape[-2] // factor,
                             batch.shape[-1] // factor), generator=generator)
        batch = batch.to(device)
        reconstruction, latents = model(batch, noise.to(device), settings.latent_noise)
        loss = (reconstruction - batch).abs().mean() + settings.latent_penalty * latents.pow(2).mean()
        if critic is None:
            return loss
        count_noise = sigma[index].view(-1, 1, 1, 1) * torch.randn(batch.shape, generator=generator)
        critic.to(device)
        with torch.no_grad():
            wanted = critic.stage_maps(batch)
        got = critic.stage_maps(reconstruction + count_noise.to(device))
        perceptual = sum((g - w).abs().mean() / (w.abs().mean() + 1e-6) for g, w in zip(got, wanted)) / len(got)
        return loss + config.perceptual.weight * perceptual

    return loss_fn


def denoiser_loss(latents: torch.Tensor, class_ids: torch.Tensor, config: TrainConfig):
    """EDM loss on latents, with the condition replaced by the null class at rate ``condition_dropout``."""
    from synthscan.model.precond import edm_loss

    settings = config.denoiser

    def loss_fn(model, indices, generator, device):
        index = torch.from_numpy(indices)
        labels = class_ids[index].clone()
        drop = torch.rand(len(indices), generator=generator) < settings.condition_dropout
        labels[drop] = NULL_CLASS
        return edm_loss(model, latents[index].to(device), labels.to(device), settings.p_mean, settings.p_std,
                        settings.sigma_data, generator)

    return loss_fn


def train_critic(run: Run, state, data: dict, log: dict, progress: bool) -> ScanClassifier:
    """The perceptual critic: a scan classifier of normal / metastasis / amyloidosis (grade >= 2), fitted as the
    fidelity judge is (synthscan/model/critic.py) on the main process and saved to ``critic.safetensors``."""
    from safetensors.torch import load_file

    settings = run.config.perceptual
    path = run.folder / "critic.safetensors"
    if state.is_main_process and not path.is_file():
        began = time.time()
        seed = int(np.random.SeedSequence([run.config.seed, 3]).generate_state(1)[0])  # not the judge's seed
        labels = np.array([judge_class_of(c) for c in data["class_ids"]])
        critic = fit_classifier(data["canonical"], labels, 3, settings.width, settings.epochs, settings.batch_size,
                                settings.lr, seed, settings.thinning, progress, desc="training critic")
        save_weights(critic, path)
        log["critic"] = {"epochs": settings.epochs, "seconds": round(time.time() - began, 1)}
    state.wait_for_everyone()
    critic = ScanClassifier(len(data["views"]), settings.width, 3)
    critic.load_state_dict(load_file(str(path)))
    return critic.eval().requires_grad_(False)


def noise_sd(counts: torch.Tensor) -> torch.Tensor:
    """Per scan, the standard deviation that Poisson counts give the network intensity y (to_network):
    sqrt(counts) has variance ~1/4, so sd(y) = 1 / sqrt(INTENSITY_REF x mean counts per pixel)."""
    mean_counts = counts.sum(dim=(1, 2, 3), dtype=torch.float64) / counts[0].numel()
    return (1 / torch.sqrt(INTENSITY_REF * mean_counts)).float()


@torch.no_grad()
def encode_all(autoencoder, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([autoencoder.encode(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def train(manifest, out, config: TrainConfig, progress: bool = True) -> Path | None:
    """Train (or resume, or find finished) the generator of ``manifest`` into run folder ``out``.

    Returns the run folder on the main process and None on the others.
    """
    from accelerate import PartialState
    from safetensors.torch import load_file

    from synthscan.io.manifest import read_manifest

    state = PartialState(cpu=not torch.cuda.is_available())
    run = Run(out, config)
    run.check_config()
    read_manifest(manifest, required=REQUIRED_COLUMNS)  # bad input is refused before anything is written
    if (run.folder / "model.safetensors").is_file():
        if state.is_main_process:
            print(f"{run.folder} already holds a trained model (config.json, model.safetensors)")
        return run.folder if state.is_main_process else None
    if state.is_main_process:
        run.folder.mkdir(parents=True, exist_ok=True)
        write_text(run.folder / "config.toml", to_toml(config))
    state.wait_for_everyone()
    data = load_training_data(manifest, config, run.folder / "cache", state.is_main_process,
                              state.wait_for_everyone, progress)
    summary = data_summary(data)
    images = to_network(torch.from_numpy(data["canonical"]))
    log = {"num_processes": state.num_processes, "device": str(state.device), "stages": {}}

    torch.manual_seed(config.seed)
    autoencoder, denoiser = SynthscanModel.build_networks(
        len(data["views"]), (config.data.rows, config.data.cols), to_dict(config.autoencoder),
        to_dict(config.denoiser))

    def stage(name, module, loss_fn, n_items, unwrap=lambda trained: trained):
        """Train stage ``name`` once: later reruns load ``<name>.safetensors`` into ``module``."""
        path = run.folder / f"{name}.safetensors"
        if path.is_file():
            module = unwrap(module)
            module.load_state_dict(load_file(str(path)))
        else:
            trained, log["stages"][name] = train_stage(run, name, module, loss_fn, n_items, progress)
            module = unwrap(trained)
            if state.is_main_process:
                save_weights(module, path)
            state.wait_for_everyone()
        return module.eval().requires_grad_(False)

    def unwrap(wrapper):
        return wrapper.autoencoder

    autoencoder = stage("autoencoder", AutoencoderForTraining(autoencoder),
                        autoencoder_loss(images, config, config.train_autoencoder.crop_rows), len(images), unwrap)
    if config.train_perceptual.steps > 0 or config.train_decoder.steps > 0:
        critic = train_critic(run, state, data, log, progress)
        sigma = noise_sd(torch.from_numpy(data["canonical"]))
    if config.train_perceptual.steps > 0:
        loss_fn = autoencoder_loss(images, config, config.train_perceptual.crop_rows, critic, sigma)
        autoencoder = stage("perceptual", AutoencoderForTraining(autoencoder.requires_grad_(True)), loss_fn,
                            len(images), unwrap)
    raw = encode_all(autoencoder, images)
    mean = raw.mean(dim=(0, 2, 3))
    std = raw.std(dim=(0, 2, 3)).clamp_min(1e-6) / config.denoiser.sigma_data
    latents = (raw - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
    class_ids = torch.from_numpy(data["class_ids"]).long()
    denoiser = stage("denoiser", denoiser, denoiser_loss(latents, class_ids, config), len(latents))
    if config.train_decoder.steps > 0:
        grown = autoencoder.with_decoder_blocks(config.autoencoder.refined_decoder_blocks
                                                or config.autoencoder.decoder_blocks)
        grown.encoder.requires_grad_(False)  # only the decoder learns: the denoiser's latents stay valid
        loss_fn = autoencoder_loss(images, config, config.train_decoder.crop_rows, critic, sigma)
        autoencoder = stage("decoder", AutoencoderForTraining(grown), loss_fn, len(images), unwrap)
    reconstruction_l1 = float((autoencoder.decode(raw[:256]) - images[:256]).abs().mean())

    info = {**summary, "grid": [config.data.rows, config.data.cols], "latent_mean": mean.tolist(),
            "latent_std": std.tolist(), "sampler": to_dict(config.sampler), "training": to_dict(config),
            "autoencoder_l1": round(reconstruction_l1, 5)}
    model = SynthscanModel(autoencoder, denoiser, info)
    if state.is_main_process:
        log["autoencoder_l1"] = info["autoencoder_l1"]
        _write_run_log(run, log)
        plot_losses(run.folder)
        model.save_pretrained(run.folder, config.save_dtype)
    state.wait_for_everyone()
    if state.num_processes > 1:
        state.destroy_process_group()  # left to interpreter exit, gloo's threads can abort the process
    return run.folder if state.is_main_process else None


def _write_run_log(run: Run, log: dict) -> None:
    path = run.folder / "run.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    stages = {**previous.get("stages", {}), **log["stages"]}
    write_text(path, json.dumps({**previous, **log, "stages": stages}, indent=2) + "\n")


def plot_losses(folder) -> Path:
    """``loss.png``: the loss curve of each stage (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    stages = [name for name in STAGES if (folder / f"loss_{name}.csv").is_file()] or list(STAGES[:2])
    figure, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.5), squeeze=False)
    for axis, name in zip(axes[0], stages):
        path = folder / f"loss_{name}.csv"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
            if len(table):
                axis.plot(table[:, 0], table[:, 1], lw=0.6, alpha=0.5)
                window = max(1, len(table) // 50)
                smooth = np.convolve(table[:, 1], np.ones(window) / window, mode="valid")
                axis.plot(table[window - 1:, 0], smooth, lw=1.5)
                axis.set_yscale("log")
        axis.set_title(name)
        axis.set_xlabel("optimizer step")
    axes[0, 0].set_ylabel("loss")
    figure.tight_layout()
    with atomic_path(folder / "loss.png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return folder / "loss.png"
