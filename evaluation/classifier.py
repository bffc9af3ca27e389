"""Downstream classifiers of whole-body scans: torchvision backbones adapted to one or two planar views.

Backbones (``weights=None``, trained from scratch): ResNet-18/50 (He et al. 2016), DenseNet-121 (Huang et al.
2017), VGG-11/16 with batch norm (Simonyan & Zisserman 2015), and ``tiny``, a four-block CNN of stride 4 for tests.

Views. Anterior and posterior are registered images of the same body (the posterior view is mirrored to be
seen from the front, synthscan/scan.py), so by default they enter as the input *channels* of one backbone
(``fusion="channels"``: early fusion, one backbone pass, and an anatomical position means the same thing in
both channels). ``fusion="views"`` runs one shared single-channel backbone per view and concatenates the
pooled features (late fusion, V times the compute, one Grad-CAM map per view). V = 1 works with both.

Heads. Every backbone ends in its last convolutional feature map (``model.features``: the Grad-CAM target),
global average pooling and one linear layer. For VGG this replaces the 7x7x512 -> 4096 -> 4096 classifier,
which would hold 120 M parameters for little gain on whole-body strips.

Saving follows diffusers: ``model.safetensors`` (weights, config in its metadata) and ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from evaluation.data import DEFAULT_GRIDS, TASKS, PreprocessSpec
from evaluation.strategies import STRATEGIES
from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path, write_text

FORMAT = "synthscan-classifier/1"
MIN_SIDE = {"densenet121": 32}  # its five halvings leave nothing of smaller inputs


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that defines a trained classifier run (saved as config.json and in the weights)."""

    task: str = "metastasis"
    arch: str = "resnet18"
    fusion: str = "channels"
    views: tuple[str, ...] = ("anterior", "posterior")
    grid: tuple[int, int] = (256, 64)
    region: str = "whole"
    strategy: str = "original"
    seed: int = 0
    arm: str = ""
    budget: str = "steps"  # "steps": a fixed number of optimizer steps (equal across arms); "epochs"
    steps: int = 250
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    eval_every: int = 25
    patience: int = 6  # evaluations without improvement before stopping early
    val_fraction: float = 0.2
    folds: int = 1

    def __post_init__(self):
        object.__setattr__(self, "views", tuple(self.views))
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        checks = [
            (self.task in TASKS, f"unknown task {self.task!r} (choose from {', '.join(TASKS)})"),
            (self.arch in ARCHS, f"unknown arch {self.arch!r} (choose from {', '.join(ARCHS)})"),
            (self.fusion in ("channels", "views"), f"fusion must be 'channels' or 'views', got {self.fusion!r}"),
            (self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r} (choose from {', '.join(STRATEGIES)})"),
            (self.budget in ("steps", "epochs"), f"budget must be 'steps' or 'epochs', got {self.budget!r}"),
            (self.steps >= 1 and self.epochs >= 1, "steps and epochs must be >= 1"),
            (self.batch_size >= 2, "batch size must be >= 2"),
            (self.eval_every >= 1 and self.patience >= 1, "eval_every and patience must be >= 1"),
            (0 < self.val_fraction < 1, "val_fraction must be in (0, 1)"),
            (self.folds >= 1, "folds must be >= 1 (1 = no cross-validation)"),
            (min(self.grid) >= MIN_SIDE.get(self.arch, 8), f"{self.arch} needs a grid of at least "
                                                            f"{MIN_SIDE.get(self.arch, 8)} pixels a side"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(message)
        self.preprocess  # validates views, grid and region

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec(views=self.views, grid=self.grid, region=self.region)

    @property
    def n_classes(self) -> int:
        return TASKS[self.task]

    def to_dict(self) -> dict:
        return {**asdict(self), "format": FORMAT}

    @classmethod
    def from_dict(cls, data: dict, path=None) -> "ClassifierConfig":
        data = dict(data)
        if data.pop("format", None) != FORMAT:
            raise BadInputError("not a synthscan classifier config", path)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise BadInputError(f"unknown config key(s) {unknown}", path)
        return cls(**data)


def default_grid(region: str) -> tuple[int, int]:
    return DEFAULT_GRIDS[region]


# ------------------------------------------------------------------------------------------- networks
def _resnet(name):
    def build(in_channels):
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                              net.layer4)
        return trunk, net.fc.in_features
    return build


def _densenet121(in_channels):
    import torchvision

    net = torchvision.models.densenet121(weights=None)
    net.features.conv0 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return nn.Sequential(net.features, nn.ReLU(inplace=False)), net.classifier.in_features


def _vgg(name):
    def build(in_channels):
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        net.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        return net.features[:-1], 512  # up to the last ReLU, before the last max-pool
    return build


def _tiny(in_channels, width=16):
    layers, channels = [], in_channels
    for block in range(4):
        out = width * 2 ** min(block, 2)
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        if block < 2:  # stride 4 keeps maps fine enough for Grad-CAM on small test grids
            layers.append(nn.MaxPool2d(2))
        channels = out
    return nn.Sequential(*layers), channels


ARCHS = {
    "resnet18": _resnet("resnet18"),
    "resnet50": _resnet("resnet50"),
    "densenet121": _densenet121,
    "vgg11_bn": _vgg("vgg11_bn"),
    "vgg16_bn": _vgg("vgg16_bn"),
    "tiny": _tiny,
}


class ScanClassifier(nn.Module):
    """Backbone trunk (``features``) -> global average pool -> linear head; input ``(B, V, H, W)``."""

    def __init__(self, arch: str, n_views: int, n_outputs: int, fusion: str = "channels"):
        super().__init__()
        self.fusion, self.n_views = fusion, n_views
        in_channels = n_views if fusion == "channels" else 1
        self.features, width = ARCHS[arch](in_channels)
        per_view = n_views if fusion == "views" else 1
        self.head = nn.Linear(width * per_view, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if self.fusion == "views":
            x = x.reshape(batch * self.n_views, 1, *x.shape[2:])
        pooled = self.features(x).mean(dim=(2, 3))
        return self.head(pooled.reshape(batch, -1))


def build_model(config: ClassifierConfig) -> ScanClassifier:
    n_outputs = 1 if config.n_classes == 2 else config.n_classes
    return ScanClassifier(config.arch, len(config.views), n_outputs, config.fusion)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(B, C)`` from the head's output (one logit for binary tasks)."""
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - positive, positive], dim=1)
    return torch.softmax(logits, dim=1)


def score_from_probabilities(probs: np.ndarray, task: str) -> np.ndarray:
    """The one score per scan written to predictions.csv: P(positive); for grades, P(grade >= 2)."""
    return probs[:, 2:].sum(axis=1) if task == "amyloid_grade" else probs[:, 1]


# -------------------------------------------------------------------------------------- save and load
def save_model(model: nn.Module, config: ClassifierConfig, folder) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"config": json.dumps(config.to_dict())})
    write_config(config, folder)


def write_config(config: ClassifierConfig, folder) -> None:
    write_text(Path(folder) / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")


def read_config(folder) -> ClassifierConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise BadInputError("not a classifier run folder (no config.json)", folder)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BadInputError(f"unreadable config ({error})", path) from None
    return ClassifierConfig.from_dict(data, path)


def member_folders(run) -> list[Path]:
    """The folders holding weights: the run itself, or its fold-k folders after cross-validation."""
    run = Path(run)
    config = read_config(run)
    folders = [run] if config.folds == 1 else [run / f"fold-{k}" for k in range(1, config.folds + 1)]
    missing = [f for f in folders if not (f / "model.safetensors").is_file()]
    if missing:
        raise BadInputError(f"training is not finished (no weights in {missing[0]}); rerun classify train", run)
    return folders


def load_model(folder, device="cpu") -> tuple[ScanClassifier, ClassifierConfig]:
    from safetensors.torch import load_file

    config = read_config(folder)
    model = build_model(config)
    model.load_state_dict(load_file(str(Path(folder) / "model.safetensors"), device="cpu"))
    return model.to(device).eval(), config


def load_run(run, device="cpu") -> tuple[list[ScanClassifier], ClassifierConfig]:
    """All members of a run (one model, or one per fold: their probabilities are averaged)."""
    config = read_config(run)
    return [load_model(folder, device)[0] for folder in member_folders(run)], config


@torch.no_grad()
def predict_probabilities(models, counts: np.ndarray, batch_size: int = 64, device="cpu") -> np.ndarray:
    """Mean class probabilities ``(N, C)`` of the models for grid counts ``(N, V, H, W)``."""
    from evaluation.data import normalise

    models = models if isinstance(models, (list, tuple)) else [models]
    out = []
    for start in range(0, len(counts), batch_size):
        x = normalise(torch.as_tensor(np.asarray(counts[start: start + batch_size]), dtype=torch.float32)).to(device)
        out.append(torch.stack([probabilities(m.eval()(x)) for m in models]).mean(0).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2))
