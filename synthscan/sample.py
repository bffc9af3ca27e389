"""Batched, sharded, resumable generation of synthetic scans to DICOM/PNG with a provenance manifest.

Contract (DESIGN.md section 5): scan i of a run uses seed ``seed + i``; its latent noise, grade draw, total
counts and Poisson counts come from that seed alone (synthscan/model/pipeline.py), and the Poisson step is
continuous in the expected counts (synthscan/model/counts.py), so the same seed gives the same scan to within
one count whatever the batch size or number of processes. Output layout::

    OUT/manifest.csv                                  one row per scan, appended across runs, unique ids
    OUT/contact_sheet.png                             the first scans of the folder
    OUT/<condition>[-g<grade>]/<seed:06d>.dcm         (and .png with --format png)

Process r of w takes seeds r, r + w, ...: under ``accelerate launch`` / ``torchrun`` the launched
processes, otherwise worker processes that ``sample`` spawns itself (``--workers``; by default one per core,
since one process cannot use two cores: its writer threads wait for the GIL in pydicom). Each process writes
its own files (atomically, synthscan/io/atomic.py) and a manifest part that the main process merges. A rerun
skips every scan whose files exist (a file exists only once complete) and rebuilds its manifest row from the
DICOM header, so an interrupted run is finished by running it again. Memory is flat in n: a scan lives from
its batch to its file. In each process, network work (torch) overlaps with Poisson sampling and file writing
in a small thread pool (numpy and zlib release the GIL).

``sample`` never imports the phantom and never reads training data: the model folder holds all it needs.
"""

from __future__ import annotations

import math
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path
from synthscan.model.conditions import check_condition, check_negative, class_for, folder_name, labels_for
from synthscan.model.guidance import interval_ok, negative_guidance
from synthscan.model.guidance import resolve as resolve_guidance

FORMATS = ("dicom", "png")
DEFAULT_MODEL = Path(__file__).parent / "assets" / "default-model"
CONTACT_SHEET_SCANS = 16


@dataclass(frozen=True)
class SampleRequest:
    """What to generate (validated on construction; nothing is written before that)."""

    condition: str
    n: int
    out: Path
    seed: int = 0
    grade: int | None = None
    batch_size: int = 32
    steps: int | None = None
    guidance_scale: float | None = None
    solver: str | None = None
    negative_condition: str | None = None  # None: the model's default for the condition; "none": no negative
    negative_scale: float | None = None  # None: the model's
    guidance_interval: tuple[float, float] | None = None  # None: the model's; (0, inf): guidance at every step
    formats: tuple[str, ...] = ("dicom",)
    matrix: tuple[int, int] | None = None
    audit: Path | None = None  # an audit index (synthscan audit --save-index): near-copies are re-drawn
    max_redraws: int = 20
    workers: int | None = None  # processes of a plain run (None: see _local_workers); 1 under accelerate/torchrun
    device: str = "cpu"  # "cuda" (processes take the GPUs in turn) or "cuda:N"
    precision: str = "fp32"  # "bf16": the networks run in bfloat16 autocast

    def __post_init__(self):
        check_condition(self.condition, self.grade)
        if self.negative_condition != "none":
            check_negative(self.condition, self.negative_condition)
        problems = [
            (self.n >= 1, f"n must be >= 1, got {self.n}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.steps is None or self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.guidance_scale is None or (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0),
             f"guidance scale must be >= 0, got {self.guidance_scale}"),
            (self.negative_scale is None or (math.isfinite(self.negative_scale) and self.negative_scale >= 0),
             f"negative scale must be >= 0, got {self.negative_scale}"),
            (self.guidance_interval is None or interval_ok(self.guidance_interval),
             f"guidance interval must be LO,HI with 0 <= LO < HI, got {self.guidance_interval}"),
            (self.solver in (None, "dpmpp_2m", "heun"), f"unknown solver {self.solver!r} (dpmpp_2m, heun)"),
            (self.max_redraws >= 1, f"max redraws must be >= 1, got {self.max_redraws}"),
            (self.workers is None or self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
            (re.fullmatch(r"cpu|cuda(:\d+)?", self.device) is not None,
             f"device must be cpu, cuda or cuda:N, got {self.device!r}"),
            (self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}"),
            (bool(self.formats) and set(self.formats) <= set(FORMATS),
             f"format must be a comma-separated subset of {','.join(FORMATS)}, got {','.join(self.formats)}"),
        ]
        for ok, message in problems:
            if not ok:
                raise BadInputError(message)
        object.__setattr__(self, "out", Path(self.out))


@dataclass(frozen=True)
class SampleResult:
    out: Path
    written: int
    skipped: int
    model_hash: str
    seconds: float
    is_main_process: bool = True
    redrawn: int | None = None  # scans re-drawn by the audit (None: no audit)

    def summary(self) -> str:
        audit = "" if self.redrawn is None else (f"; audit: {self.written + self.skipped} checked, "
                                                 f"{self.redrawn} re-drawn as near-copies")
        return (f"{self.written} scans written, {self.skipped} already there, in {self.out} "
                f"(manifest.csv, contact_sheet.png; model {self.model_hash[:8]}; {self.seconds:.1f} s{audit})")


def study_id(model_hash: str, condition: str, grade: int | None, seed: int) -> str:
    return f"syn-{model_hash[:8]}-{folder_name(condition, grade)}-{seed:06d}"


def _check_out_folder(out: Path, model_hash: str) -> pd.DataFrame | None:
    """The folder's manifest (None if new); refuse a folder holding another model's samples."""
    from synthscan.io.manifest import read_manifest

    manifest = out / "manifest.csv"
    if out.exists() and not out.is_dir():
        raise BadInputError("output path exists and is not a folder", out)
    if not manifest.is_file():
        return None
    frame = read_manifest(manifest)
    sources = set(frame["source"].dropna().astype(str)) if "source" in frame else set()
    others = sources - {model_hash}
    if others:
        raise BadInputError(f"folder holds samples of another model ({sorted(others)[0][:8]}); "
                            "use a new --out per model", out)
    return frame


def sample(request: SampleRequest, model_dir=None, progress: bool = True) -> SampleResult:
    """Generate ``request.n`` scans into ``request.out`` with the model in ``model_dir`` (default: bundled)."""
    from synthscan.model.folder import read_model_config

    folder = DEFAULT_MODEL if model_dir is None else Path(model_dir)
    sampler = read_model_config(folder).get("sampler", {})  # refuses a folder that is no model, before any work
    resolve_guidance(sampler, request.condition, request.guidance_scale, request.negative_condition,
                     request.negative_scale, request.guidance_interval, request.grade)
    if request.device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise BadInputError(f"--device {request.device}: no CUDA device is available (torch {torch.__version__})")
    workers = 1 if _launched() else _local_workers(request)
    if workers > 1:
        return _sample_with_workers(request, folder, workers, progress)
    return _sample_in_process(request, folder, progress)


def _launched() -> bool:
    """Whether this process is one of several started by ``accelerate launch`` / ``torchrun``."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _progress_bar(request: SampleRequest, total: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"sampling {folder_name(request.condition, request.grade)}", unit="scan",
                disable=not show)


def _sample_in_process(request: SampleRequest, folder: Path, progress: bool) -> SampleResult:
    """All scans in this process, or this process's share under ``accelerate launch`` / ``torchrun``."""
    import time

    from accelerate import PartialState

    from synthscan.model.pipeline import SynthscanModel

    began = time.time()
    model = SynthscanModel.from_pretrained(folder)
    existing = _check_out_folder(request.out, model.hash)
    state = PartialState(cpu=True)  # sampling runs on CPU; cpu=True also lets torchrun start gloo processes
    rank, world = state.process_index, state.num_processes
    with _progress_bar(request, len(_seeds(request, rank, world)), progress and state.is_main_process) as bar:
        written, skipped, redrawn = _shard(model, request, rank, world, bar.update)
    state.wait_for_everyone()
    if state.is_main_process:
        _merge_manifest(request.out, existing, world)
        _contact_sheet(request.out)
    state.wait_for_everyone()
    if world > 1:  # totals over all processes
        from accelerate.utils import gather_object

        counts = gather_object([(written, skipped, redrawn)])
        written, skipped, redrawn = (sum(c[i] for c in counts) for i in range(3))
        state.destroy_process_group()  # left to interpreter exit, gloo's threads can abort the process
    return SampleResult(request.out, written, skipped, model.hash, time.time() - began, state.is_main_process,
                        None if request.audit is None else redrawn)


def _sample_with_workers(request: SampleRequest, folder: Path, workers: int, progress: bool) -> SampleResult:
    """The scans shared by ``workers`` spawned processes. This process only checks the model and the output
    folder, shows progress and merges the manifest: it never imports torch (about 0.5 GB less memory)."""
    import time

    from synthscan.model.folder import WEIGHTS, file_hash

    began = time.time()
    model_hash = file_hash(folder / WEIGHTS)
    existing = _check_out_folder(request.out, model_hash)
    with _progress_bar(request, request.n, progress) as bar:
        written, skipped, redrawn = _run_workers(request, folder, workers, bar.update)
    _merge_manifest(request.out, existing, workers)
    _contact_sheet(request.out)
    return SampleResult(request.out, written, skipped, model_hash, time.time() - began, True,
                        None if request.audit is None else redrawn)


def _seeds(request: SampleRequest, rank: int, world: int) -> list[int]:
    """Process ``rank`` of ``world`` takes seeds SEED + rank, SEED + rank + world, ..."""
    return list(range(request.seed + rank, request.seed + request.n, world))


def _local_workers(request: SampleRequest) -> int:
    """Worker processes of a plain (not launched) run: ``request.workers``, or one per core (at most 8) with at
    least four batches each (starting a worker costs seconds: torch and diffusers are imported afresh)."""
    import os

    if request.workers is not None:
        return request.workers
    if request.device != "cpu":
        return 1  # one process drives the GPU; --workers N for more CPU cores on counts and files
    return max(1, min(os.cpu_count() or 1, 8, request.n // (4 * request.batch_size)))


def _shard(model, request: SampleRequest, rank: int, world: int, report) -> tuple[int, int, int]:
    """Scans of process ``rank`` of ``world`` and its manifest part; (written, skipped, re-drawn).
    ``report(k)`` is called as k more scans are done (skipped ones first)."""
    import torch

    seeds = _seeds(request, rank, world)
    network_threads, writer_threads = _threads(world, request.device != "cpu")
    torch.set_num_threads(network_threads)
    model.to_device(_device(request.device, rank), request.precision)
    writer = _Writer(model, request, tuple(request.matrix or model.info["matrix"]), _auditor(request.audit, model))
    finished = {s for s in seeds if writer.complete(s)}
    todo = [s for s in seeds if s not in finished]
    rows = [writer.row_from_file(s) for s in seeds if s in finished]
    report(len(rows))
    rows += _generate(model, writer, todo, request, report, writer_threads)
    if rows:
        with atomic_path(request.out / f".manifest-part-{rank}.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    return len(todo), len(seeds) - len(todo), sum(1 for row in rows if row.get("audit_redraws"))


def _worker_shard(request: SampleRequest, folder: Path, rank: int, world: int, queue) -> tuple[int, int, int]:
    """:func:`_shard` in a worker process of :func:`_run_workers` (progress goes through ``queue``)."""
    from synthscan.model.pipeline import SynthscanModel

    model = SynthscanModel.from_pretrained(folder)
    return _shard(model, request, rank, world, queue.put)


def _run_workers(request: SampleRequest, folder: Path, workers: int, report) -> tuple[int, int, int]:
    """Run the ``workers`` shards in fresh (spawned) processes; sums of their (written, skipped, re-drawn)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's thread pools
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        progress = manager.Queue()
        futures = [pool.submit(_worker_shard, request, folder, rank, workers, progress) for rank in range(workers)]
        while True:
            running = wait(futures, timeout=0.2).not_done
            while not progress.empty():
                report(progress.get())
            if not running:
                break
        results = [future.result() for future in futures]  # a worker's error (e.g. BadInputError) is raised here
    return tuple(sum(result[i] for result in results) for i in range(3))


def _auditor(folder, model):
    """The saved audit of ``folder`` (None without one); an encoder-feature index must match the model."""
    if folder is None:
        return None
    import json

    from synthscan.privacy import MemorizationAuditor

    try:
        feature_model = json.loads((Path(folder) / "index.json").read_text()).get("feature_model")
    except (OSError, ValueError):
        feature_model = None  # MemorizationAuditor.load names the problem
    features = None
    if feature_model is not None:
        if feature_model != model.hash:
            raise BadInputError(f"the audit index uses the encoder of generator {feature_model[:8]}, not of the "
                                f"sampling generator {model.hash[:8]}: rebuild it with synthscan audit --model",
                                folder)
        from synthscan.membership import encoder_features

        features = encoder_features(model)
    return MemorizationAuditor.load(folder, features)


def redraw_seed(seed: int, attempt: int) -> int:
    """The noise seed of re-draw ``attempt`` (>= 1) of sample ``seed``: fixed, and far from every run's seeds."""
    import hashlib

    digest = hashlib.sha256(f"synthscan-redraw:{seed}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _threads(processes: int, gpu: bool = False) -> tuple[int, int]:
    """(torch threads, writer threads) of one process: the cores of the process split half and half.

    The networks' small convolutions gain little from many threads, while Poisson sampling and file writing
    (one scan per writer thread) scale well; on 2 cores this pipelines the network on one core with the
    writing on the other, and avoids OpenMP's spinning when the machine is shared. With a GPU, one core
    drives it and the others write. ``OMP_NUM_THREADS``, when set, fixes the torch threads.
    """
    import os

    cores = max(1, (os.cpu_count() or 1) // processes)
    network = 1 if gpu else max(1, cores // 2)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        network = int(os.environ["OMP_NUM_THREADS"])
    return max(1, network), max(1, cores - network)


def _device(device: str, rank: int) -> str:
    """The torch device of process ``rank``: with ``cuda``, processes take the GPUs in turn (by LOCAL_RANK
    under accelerate launch / torchrun), so several processes may share one GPU."""
    import os

    if device != "cuda":
        return device
    import torch

    local = int(os.environ.get("LOCAL_RANK", rank))
    return f"cuda:{local % max(1, torch.cuda.device_count())}"


def _generate(model, writer: "_Writer", seeds: list[int], request: SampleRequest, report,
              writer_threads: int = 1) -> list[dict]:
    from synthscan.model.pipeline import sample_rng

    rows, pending = [], deque()
    with ThreadPoolExecutor(max_workers=writer_threads) as pool:
        for start in range(0, len(seeds), request.batch_size):
            batch = seeds[start:start + request.batch_size]
            rngs = [sample_rng(s) for s in batch]
            grades = [request.grade if request.condition != "amyloidosis" or request.grade is not None
                      else model.draw_amyloid_grade(rng) for rng in rngs]
            classes = [class_for(request.condition, g if request.condition == "amyloidosis" else None)
                       for g in grades]
            totals = [model.draw_total_counts(c, rng) for c, rng in zip(classes, rngs)]
            expected = writer.expected_counts(batch, classes, totals)
            while len(pending) > 1:  # keep at most two batches in flight: memory stays flat in n
                done = pending.popleft()
                rows += [future.result() for future in done]
                report(len(done))
            pending.append([pool.submit(writer.write, s, c, image, rng)
                            for s, c, image, rng in zip(batch, classes, expected, rngs)])
        while pending:
            done = pending.popleft()
            rows += [future.result() for future in done]
            report(len(done))
    return rows


class _Writer:
    """Files and manifest row of one sample."""

    def __init__(self, model, request: SampleRequest, matrix, auditor=None):
        self.model, self.request, self.matrix, self.auditor = model, request, tuple(matrix), auditor
        sampler = model.info["sampler"]
        self.steps = request.steps or sampler["steps"]
        self._guidance = {}  # class id -> Guidance (amyloid grades may have their own scales)
        self.negative_condition = negative_guidance(sampler, request.condition, request.negative_condition,
                                                    request.negative_scale)[0]
        self.solver = request.solver or sampler["solver"]
        self.spacing = model.output_spacing_mm(self.matrix)
        tracers = model.info.get("data", {}).get("tracers", [])
        self.tracer = tracers[0] if len(tracers) == 1 else None
        self.folder = request.out / folder_name(request.condition, request.grade)

    def guidance(self, class_id: int):
        """Guidance of the scans of ``class_id`` (the request's settings, else the model's for its condition and
        amyloid grade)."""
        if class_id not in self._guidance:
            request = self.request
            grade = labels_for(class_id)["amyloid_grade"] if request.condition == "amyloidosis" else None
            self._guidance[class_id] = resolve_guidance(
                self.model.info["sampler"], request.condition, request.guidance_scale, request.negative_condition,
                request.negative_scale, request.guidance_interval, grade)[0]
        return self._guidance[class_id]

    def expected_counts(self, seeds, class_ids, totals) -> np.ndarray:
        """Expected counts of one batch at the run's matrix and sampler settings (one pass per guidance, so a batch
        may mix amyloid grades with their own scales)."""
        import torch

        groups = {}
        for i, class_id in enumerate(class_ids):
            groups.setdefault(self.guidance(class_id), []).append(i)
        with torch.inference_mode():
            parts = [(index, self.model.expected_counts(
                [seeds[i] for i in index], [class_ids[i] for i in index], [totals[i] for i in index], self.matrix,
                guidance, self.steps, self.solver).numpy()) for guidance, index in groups.items()]
        if len(parts) == 1:
            return parts[0][1]  # one guidance (one condition, or one grade): no copy of the batch
        counts = np.empty((len(seeds), *parts[0][1].shape[1:]), np.float32)
        for index, part in parts:
            counts[index] = part
        return counts

    def paths(self, seed: int) -> dict:
        suffix = {"dicom": ".dcm", "png": ".png"}
        return {fmt: self.folder / f"{seed:06d}{suffix[fmt]}" for fmt in ("dicom",) + tuple(
            f for f in self.request.formats if f != "dicom")}

    def complete(self, seed: int) -> bool:
        paths = self.paths(seed)
        return all(paths[f].is_file() for f in self.request.formats) and paths["dicom"].is_file()

    def provenance(self, seed: int, class_id: int, redraws: int | None) -> dict:
        labels = labels_for(class_id)
        audit = {} if redraws is None else {"audit_redraws": redraws}
        return {"model": self.model.hash, "seed": seed, "condition": labels["condition"],
                "amyloid_grade": labels["amyloid_grade"], **self._settings(class_id), **audit}

    def audited(self, scan, seed: int, class_id: int):
        """``scan``, or its re-draw with fresh noise while the audit flags it as a near-copy; (scan, redraws)."""
        from synthscan.model.counts import poisson_continuous
        from synthscan.model.pipeline import sample_rng
        from synthscan.scan import Scan

        if self.auditor is None:
            return scan, None
        redraws = 0
        while self.auditor.is_near_copy(scan):
            redraws += 1
            if redraws > self.request.max_redraws:
                raise BadInputError(f"seed {seed}: still a near-copy of a training scan after "
                                    f"{self.request.max_redraws} re-draws; the generator memorizes (see synthscan "
                                    "audit)", self.request.out)
            noise = redraw_seed(seed, redraws)
            rng = sample_rng(noise)
            total = self.model.draw_total_counts(class_id, rng)
            expected = self.expected_counts([noise], [class_id], [total])[0]
            scan = Scan(poisson_continuous(expected, rng), self.spacing, self.model.views)
        return scan, redraws

    def write(self, seed: int, class_id: int, expected: np.ndarray, rng: np.random.Generator) -> dict:
        from synthscan.io.dicom import write_scan
        from synthscan.model.counts import poisson_continuous
        from synthscan.render import save_png
        from synthscan.scan import Scan

        scan, redraws = self.audited(Scan(poisson_continuous(expected, rng), self.spacing, self.model.views), seed,
                                     class_id)
        paths = self.paths(seed)
        ident = study_id(self.model.hash, self.request.condition, self.request.grade, seed)
        meta = {"patient_id": ident, "patient_name": "SYNTHETIC", "synthetic": self.provenance(seed, class_id, redraws),
                "series_description": "WB ANT/POST" if len(scan.views) == 2 else f"WB {scan.views[0][:4].upper()}"}
        if self.tracer:
            meta["tracer"] = self.tracer
        if "png" in self.request.formats:
            save_png(scan, paths["png"])
        write_scan(paths["dicom"], scan, meta)  # always written, last: it marks the sample complete
        return self._row(seed, class_id, scan.total_counts, redraws)

    def row_from_file(self, seed: int) -> dict:
        import pydicom

        header = pydicom.dcmread(self.paths(seed)["dicom"], stop_before_pixels=True)
        comments = dict(part.split("=", 1) for part in str(header.get("ImageComments", "")).split("; ")[1:]
                        if "=" in part)
        class_id = class_for(comments.get("condition", self.request.condition),
                             int(comments["amyloid_grade"]) if comments.get("condition") == "amyloidosis" else None)
        redraws = int(comments["audit_redraws"]) if "audit_redraws" in comments else None
        return self._row(seed, class_id, float(header.get("CountsAccumulated", 0)), redraws)

    def _row(self, seed: int, class_id: int, total_counts: float, redraws: int | None = None) -> dict:
        ident = study_id(self.model.hash, self.request.condition, self.request.grade, seed)
        labels = labels_for(class_id)
        return {"study_id": ident, "patient_id": ident, "site": "synthetic", "tracer": self.tracer,
                "path": str(self.paths(seed)["dicom"].relative_to(self.request.out)),
                "views": "+".join(self.model.views), "rows": self.matrix[0], "cols": self.matrix[1],
                "pixel_spacing_mm": round(self.spacing[0], 4), "total_counts": total_counts,
                "metastasis": labels["metastasis"], "amyloid_grade": labels["amyloid_grade"], "synthetic": 1,
                "source": self.model.hash, "seed": seed, "condition": labels["condition"],
                **self._settings(class_id),
                **({} if redraws is None else {"audit_redraws": redraws})}

    def _settings(self, class_id: int) -> dict:
        """Sampler settings of a scan of ``class_id``, for its provenance."""
        guidance = self.guidance(class_id)
        interval = guidance.interval
        return {"guidance_scale": guidance.scale, "steps": self.steps, "solver": self.solver,
                "device": self.request.device.split(":")[0], "precision": self.request.precision,
                "negative_condition": self.negative_condition or "none", "negative_scale": guidance.negative_scale,
                "guidance_interval": "all" if interval is None else f"{interval[0]:g}-{interval[1]:g}"}


def _merge_manifest(out: Path, existing: pd.DataFrame | None, parts: int) -> None:
    from synthscan.io.manifest import write_manifest

    frames = [] if existing is None else [existing]
    new = []
    for rank in range(parts):
        part = out / f".manifest-part-{rank}.csv"
        if part.is_file():
            new.append(pd.read_csv(part, dtype=str, keep_default_na=False, na_values=[""]))
    if new:
        added = pd.concat(new, ignore_index=True)
        if existing is not None:
            frames = [existing[~existing["study_id"].isin(added["study_id"])]]
        frames.append(added)
    frame = pd.concat(frames, ignore_index=True) if frames else None
    if frame is not None:
        frame = frame.sort_values(["condition", "study_id"], kind="stable").reset_index(drop=True)
        write_manifest(frame, out / "manifest.csv")
    for rank in range(parts):
        (out / f".manifest-part-{rank}.csv").unlink(missing_ok=True)


def _contact_sheet(out: Path) -> None:
    from synthscan.io.dicom import read_scan
    from synthscan.io.manifest import read_manifest, scan_path
    from synthscan.render import contact_sheet

    frame = read_manifest(out / "manifest.csv")
    frame = frame.groupby("condition", sort=True, group_keys=False).head(
        max(1, CONTACT_SHEET_SCANS // max(1, frame["condition"].nunique()))).head(CONTACT_SHEET_SCANS)
    scans, captions = [], []
    for index, row in frame.iterrows():
        scans.append(read_scan(scan_path(frame, index), views=tuple(str(row["views"]).split("+"))))
        grade = row["amyloid_grade"]
        label = row["condition"] + (f" g{grade}" if row["condition"] == "amyloidosis" else "")
        captions.append(f"seed {row['seed']}\n{label} | synthetic")
    contact_sheet(scans, captions, out=out / "contact_sheet.png", columns=8)
