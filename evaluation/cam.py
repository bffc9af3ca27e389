"""Grad-CAM class activation maps for the downstream classifiers, overlays, and the pointing game.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017): with activations ``A_k`` of a convolutional layer and the class score ``y``,
``alpha_k = mean_ij dy/dA_k[i, j]`` and the map is ``ReLU(sum_k alpha_k A_k)``, upsampled to the input.
The layer is the end of the backbone trunk (``model.features``) unless another module is given; activations
and their gradients are taken with torch hooks, so any trained classifier works unchanged. With
``fusion="channels"`` both views share one map (they are registered, synthscan/scan.py); with
``fusion="views"`` each view has its own.

Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016): a map hits when
its maximum lies within a tolerance of a ground-truth target (here the phantom's lesion centres). Chance is
the hit probability of a point drawn uniformly over the body, per scan; the p-value is the exact
Poisson-binomial tail of the hits under those per-scan chances. Metastases cluster in the spine, so a map
that always points at the spine beats uniform chance; the second control pairs each scan's targets with the
peaks of the other scans' maps (a permutation test of the pairing), which only scan-specific maps beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class GradCAM:
    """Grad-CAM maps of a classifier ``(B, V, H, W) -> logits`` at one layer (default ``model.features``)."""

    def __init__(self, model: nn.Module, layer: nn.Module | None = None):
        self.model = model
        self.layer = layer if layer is not None else model.features
        self._activations = self._gradients = None

    def _keep(self, module, inputs, output):
        self._activations = output
        output.register_hook(self._keep_gradient)

    def _keep_gradient(self, gradient):
        self._gradients = gradient

    def __call__(self, x: torch.Tensor, target: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Maps ``(B, V', H, W)`` in [0, 1] (V' = 1 for channel fusion) and the logits used.

        ``target``: class index whose score is explained; default the positive class (binary) or the predicted
        class (multi-class).
        """
        self.model.eval()
        handle = self.layer.register_forward_hook(self._keep)
        try:
            with torch.enable_grad():
                logits = self.model(x)
                if logits.shape[1] == 1:
                    score = logits[:, 0]
                else:
                    classes = logits.argmax(1) if target is None else torch.full((len(x),), target)
                    score = logits.gather(1, classes[:, None])[:, 0]
                self.model.zero_grad(set_to_none=True)
                score.sum().backward()  # batch items are independent in eval mode
        finally:
            handle.remove()
        weights = self._gradients.mean(dim=(2, 3), keepdim=True)
        maps = F.relu((weights * self._activations).sum(dim=1, keepdim=True)).detach()
        maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        maps = maps.reshape(len(x), -1, *x.shape[-2:])
        peak = maps.amax(dim=(1, 2, 3), keepdim=True)
        maps = torch.where(peak > 0, maps / peak.clamp_min(1e-12), maps)
        self._activations = self._gradients = None
        return maps.cpu().numpy(), logits.detach().cpu().numpy()


def grad_cam(model: nn.Module, counts: np.ndarray, batch_size: int = 16, layer: nn.Module | None = None,
             target: int | None = None) -> np.ndarray:
    """Grad-CAM maps ``(N, V', H, W)`` for grid counts ``(N, V, H, W)``."""
    from evaluation.data import normalise

    cam = GradCAM(model, layer)
    device = next(model.parameters()).device
    maps = [cam(normalise(torch.as_tensor(np.asarray(counts[s: s + batch_size]), dtype=torch.float32)).to(device),
                target)[0] for s in range(0, len(counts), batch_size)]
    return np.concatenate(maps)


# ------------------------------------------------------------------------------------------ pointing game
@dataclass(frozen=True)
class PointingGame:
    """Pointing-game result over scans with at least one target, against two controls.

    ``chance_rate``/``p_value``: a point drawn uniformly over the body (exact Poisson-binomial tail).
    ``shuffled_rate``/``shuffled_p_value``: the peaks of the *other* scans' maps, i.e. a map that knows where
    lesions usually are (the spine) but not where this scan's are (permutation test of the pairing).
    """

    hits: int
    n: int
    chance_rate: float
    p_value: float  # one-sided: P(hits >= observed) if maps pointed uniformly at random over the body
    tolerance_mm: float
    shuffled_rate: float = float("nan")
    shuffled_p_value: float = float("nan")

    @property
    def hit_rate(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    def summary(self) -> str:
        if not self.n:
            return "pointing game: no scans with targets"
        text = (f"pointing game: {self.hits}/{self.n} hits ({self.hit_rate:.1%}) within {self.tolerance_mm:g} mm; "
                f"uniform chance {self.chance_rate:.1%}, p = {self.p_value:.2g} (exact, one-sided)")
        if np.isfinite(self.shuffled_rate):
            text += (f"; other scans' peaks {self.shuffled_rate:.1%}, p = {self.shuffled_p_value:.2g} "
                     "(permutation, one-sided)")
        return text


def poisson_binomial_tail(probabilities, k: int) -> float:
    """P(sum of independent Bernoulli(p_i) >= k), exactly, by convolution."""
    distribution = np.array([1.0])
    for p in probabilities:
        distribution = np.convolve(distribution, [1 - p, p])
    return float(distribution[k:].sum())


def map_peak(scan_map: np.ndarray) -> tuple[int, int]:
    """(row, col) of a map's maximum over its views (``(V', H, W)`` or ``(H, W)``)."""
    flat = scan_map.max(axis=0) if scan_map.ndim == 3 else scan_map
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(flat)), flat.shape))


def pointing_game(maps, targets, pixel_mm, body_masks, tolerance_mm: float = 40.0, n_permutations: int = 10_000,
                  seed: int = 0) -> PointingGame:
    """Hit rate of map peaks against target points (grid coordinates) and its two controls (see PointingGame).

    ``maps``: per scan ``(V', H, W)``; ``targets``: per scan an array ``(K, 2)`` of (row, col) grid points
    (scans without targets are skipped); ``pixel_mm``: per scan (row, col) size of a grid pixel in mm;
    ``body_masks``: per scan ``(H, W)`` bool, where a random pointer may land. Every scan shares one grid.
    """
    kept = [i for i, points in enumerate(targets) if len(np.asarray(points, float).reshape(-1, 2))]
    peaks = np.array([map_peak(maps[i]) for i in kept], float).reshape(-1, 2)
    # hit[j, i]: does scan j's peak hit scan i's targets?
    hit = np.zeros((len(kept), len(kept)), bool)
    chances = []
    for column, i in enumerate(kept):
        points, size = np.asarray(targets[i], float).reshape(-1, 2), np.asarray(pixel_mm[i], float)
        distances = np.hypot(*((peaks[:, None, :] - points[None]) * size).transpose(2, 0, 1))
        hit[:, column] = (distances <= tolerance_mm).any(axis=1)
        body = body_masks[i] if body_masks[i].any() else np.ones_like(body_masks[i])
        grid = np.argwhere(body).astype(float)
        distance = np.hypot(*(((grid[:, None, :] - points[None]) * size).transpose(2, 0, 1)))
        chances.append(float((distance <= tolerance_mm).any(axis=1).mean()))
    n = len(kept)
    if n == 0:
        return PointingGame(0, 0, float("nan"), float("nan"), tolerance_mm)
    hits = int(np.trace(hit))
    shuffled_rate, shuffled_p = float("nan"), float("nan")
    if n > 1:
        shuffled_rate = float((hit.sum() - hits) / (n * (n - 1)))
        rng = np.random.default_rng(seed)
        permuted = np.array([hit[rng.permutation(n), np.arange(n)].sum() for _ in range(n_permutations)])
        shuffled_p = float((1 + (permuted >= hits).sum()) / (1 + n_permutations))
    return PointingGame(hits, n, float(np.mean(chances)), poisson_binomial_tail(chances, hits), tolerance_mm,
                        shuffled_rate, shuffled_p)


def body_mask(counts: np.ndarray) -> np.ndarray:
    """Grid pixels inside the body: summed views above 10% of the median non-zero pixel."""
    image = counts.sum(axis=0)
    inside = image[image > 0]
    return image > (0.1 * np.median(inside) if inside.size else 0)


# ---------------------------------------------------------------------------------------------- overlays
def overlay_image(counts: np.ndarray, scan_map: np.ndarray, views, title: str = "", points=None,
                  alpha: float = 0.45, scale: int = 4):
    """A PIL image: each view in the inverted nuclear-medicine grey scale with the map as a colour overlay."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw, ImageFont

    from synthscan.render import window, window_max

    top = window_max(counts)
    panels = []
    for index, _ in enumerate(views):
        grey = window(counts[index], top)[..., None].repeat(3, axis=2)
        heat = colormaps["jet"](scan_map[min(index, len(scan_map) - 1)])[..., :3]
        weight = alpha * scan_map[min(index, len(scan_map) - 1)][..., None]
        blended = (1 - weight) * grey + weight * heat
        panels.append(np.round(blended * 255).astype(np.uint8))
    gap = np.full((counts.shape[1], 2, 3), 255, np.uint8)
    canvas = np.concatenate(sum(([p, gap] for p in panels), [])[:-1], axis=1)
    picture = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    width = counts.shape[2] + 2
    for row, col in np.asarray(points if points is not None else [], float).reshape(-1, 2):
        for index in range(len(views)):  # lesion centres as small circles on every view
            x, y = (col + 0.5 + index * width) * scale, (row + 0.5) * scale
            draw.ellipse([x - 2 * scale, y - 2 * scale, x + 2 * scale, y + 2 * scale], outline=(0, 160, 0), width=2)
    labelled = Image.new("RGB", (picture.width, picture.height + 28), "white")
    labelled.paste(picture, (0, 28))
    ImageDraw.Draw(labelled).multiline_text((4, 2), title + "\n" + " | ".join(views), fill=(0, 0, 0),
                                            font=ImageFont.load_default(), spacing=1)
    return labelled


# ------------------------------------------------------------------------------------------- a whole set
def resolve_layer(model: nn.Module, name: str | None) -> nn.Module | None:
    """``None`` -> the trunk's end; else a submodule name such as ``features.6`` (see ``model.named_modules``)."""
    from synthscan.errors import BadInputError

    if not name:
        return None
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n.count(".") <= 1 and n]
        raise BadInputError(f"no layer {name!r} in this model (e.g. {', '.join(names[:12])})") from None


def cam_report(run, manifest, out, lesions=None, layer: str | None = None, tolerance_mm: float = 100.0,
               max_scans: int = 64, positives_only: bool = False, cache_dir=None, progress: bool = True) -> dict:
    """Overlays (PNG per scan and a contact sheet), ``cams.csv`` and the pointing game for one manifest.

    ``lesions``: mapping study_id -> target points (row, col) in native pixels of that study (the phantom's
    lesion centres, or heart centres for amyloidosis); the pointing game is played on positive scans only.
    Without targets no localisation score is computed.
    """
    import json
    from pathlib import Path

    from PIL import Image

    from evaluation.classifier import load_run
    from evaluation.data import load_grid_scans, to_grid
    from evaluation.predict import read_test_set, train_patients
    from evaluation.training import prediction_frame
    from synthscan.io.atomic import atomic_path, write_text

    models, config = load_run(run)
    frame, labels = read_test_set(manifest, config, train_patients(run), role="Grad-CAM")
    keep = np.flatnonzero(labels > 0) if positives_only else np.arange(len(frame))
    frame, labels = frame.iloc[keep[:max_scans]], labels[keep[:max_scans]]
    scans = load_grid_scans(frame, config.preprocess, cache_dir, progress, "scans")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # An ensemble (cross-validation folds) is explained by its first member; its maps are per model.
    model = models[0]
    maps = grad_cam(model, scans.counts, layer=resolve_layer(model, layer))
    from evaluation.classifier import predict_probabilities

    table = prediction_frame(frame, config, predict_probabilities(models, scans.counts), labels)
    targets, sizes = [], []
    for study, box, spacing, label in zip(frame["study_id"], scans.boxes_mm, scans.spacing_mm, labels):
        points = (lesions or {}).get(study, []) if label > 0 else []  # the game is played on positives
        targets.append([to_grid(p, spacing, box, config.grid) for p in points])
        sizes.append(((box[1] - box[0]) / config.grid[0], (box[3] - box[2]) / config.grid[1]))
    pictures = []
    peaks = [map_peak(m) for m in maps]
    for i, study in enumerate(frame["study_id"]):
        title = f"{study}  label {labels[i]}  score {table['score'].iloc[i]:.3f}"
        picture = overlay_image(scans.counts[i], maps[i], config.views, title, points=targets[i])
        with atomic_path(out / f"{study}.png") as tmp:
            picture.save(tmp, format="PNG")
        pictures.append(picture)
    table["peak_row"], table["peak_col"] = [p[0] for p in peaks], [p[1] for p in peaks]
    result = None
    if lesions is not None:
        result = pointing_game(maps, targets, sizes, [body_mask(c) for c in scans.counts], tolerance_mm)
        table["lesions"] = [len(t) for t in targets]
    with atomic_path(out / "cams.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    columns = min(8, len(pictures))
    width, height = max(p.width for p in pictures), max(p.height for p in pictures)
    sheet = Image.new("RGB", (columns * width, -(-len(pictures) // columns) * height), "white")
    for i, picture in enumerate(pictures):
        sheet.paste(picture, ((i % columns) * width, (i // columns) * height))
    with atomic_path(out / "contact_sheet.png") as tmp:
        sheet.save(tmp, format="PNG")
    summary = {"scans": len(frame), "layer": layer or "features (end of the backbone)", "arch": config.arch,
               "task": config.task}
    if result is not None:
        summary.update({"pointing_game_hits": result.hits, "pointing_game_n": result.n,
                        "hit_rate": result.hit_rate, "chance_rate": result.chance_rate, "p_value": result.p_value,
                        "shuffled_rate": result.shuffled_rate, "shuffled_p_value": result.shuffled_p_value,
                        "tolerance_mm": tolerance_mm, "summary": result.summary()})
    write_text(out / "cam_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


METASTATIC_KINDS = ("metastasis", "cold")  # phantom focus kinds that are metastases (benign mimics are not)
TRUTH_NAMES = ("ground_truth.json", "lesions.json")  # what synthscan phantom writes next to its manifest


def _truth_file(manifest, side_file):
    from pathlib import Path

    from synthscan.errors import BadInputError

    if side_file:
        if not Path(side_file).is_file():
            raise BadInputError("ground-truth side file not found", side_file)
        return Path(side_file)
    folder = Path(manifest).parent
    return next((folder / name for name in TRUTH_NAMES if (folder / name).is_file()), None)


def _truth_records(path) -> dict:
    """study_id -> record (the phantom's ground_truth.json) or -> [[row, col], ...] (its lesions.json)."""
    import json

    from synthscan.errors import BadInputError

    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInputError(f"ground truth is not JSON ({error})", path) from None
    if isinstance(data, list):  # a list of records
        data = {str(record.get("study_id")): record for record in data if isinstance(record, dict)}
    if not isinstance(data, dict):
        raise BadInputError("ground truth must map study_id to a record or a list of points", path)
    return data


def find_lesions(manifest, side_file=None, kinds=METASTATIC_KINDS) -> dict | None:
    """Lesion centres per study (native pixel row, col in the orientation rule) from the phantom's ground
    truth next to the manifest (``ground_truth.json``: only lesions of ``kinds`` count; else ``lesions.json``)
    or from ``side_file``; None when there is none."""
    from synthscan.errors import BadInputError

    path = _truth_file(manifest, side_file)
    if path is None:
        return None
    lesions = {}
    try:
        for study, entry in _truth_records(path).items():
            if isinstance(entry, dict):
                entry = [(x["row"], x["col"]) for x in entry.get("lesions", []) if x.get("kind") in kinds]
            lesions[str(study)] = [(float(point[0]), float(point[1])) for point in entry]
    except (KeyError, TypeError, IndexError, ValueError) as error:
        raise BadInputError(f"unreadable lesion entry ({error!r})", path) from None
    return lesions


def find_hearts(manifest, side_file=None) -> dict | None:
    """Heart centres per study (native pixel row, col) from the phantom's ground_truth.json, or None."""
    path = _truth_file(manifest, side_file)
    if path is None:
        return None
    records = _truth_records(path)
    hearts = {str(study): (float(r["heart"]["row"]), float(r["heart"]["col"]))
              for study, r in records.items() if isinstance(r, dict) and r.get("heart")}
    return hearts or None
