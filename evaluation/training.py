"""Training loop of the downstream classifiers: fixed step budget, early stopping, checkpoints and resume.

- Budget: arms are compared at an equal number of optimizer steps by default (``budget="steps"``), so an arm
  with 10x augmented copies or added synthetic scans does not also get 10x more updates; ``budget="epochs"``
  gives each arm ``epochs`` passes over its own (expanded) training set instead.
- Learning rate: AdamW with linear warm-up and cosine decay over the budget, a pure function of the step.
- Early stopping on a patient-grouped validation set of real scans: every ``eval_every`` steps the model is
  scored (AUC for binary tasks, cross-entropy for grades); the best weights are kept and training stops after
  ``patience`` evaluations without improvement.
- Checkpoints: ``checkpoints/step-XXXXXX.pt`` (model, optimizer, best weights, history) at every evaluation,
  the last two kept. Rerunning the same command resumes from the newest; batches are a pure function of the
  step (evaluation/strategies.py), so nothing is replayed.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from evaluation.classifier import (ClassifierConfig, build_model, predict_probabilities, read_config,
                                   save_model, score_from_probabilities, write_config)
from evaluation.data import is_synthetic, load_grid_scans, normalise, task_labels
from evaluation.strategies import TrainingStream, get_strategy
from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path, write_text

KEEP_CHECKPOINTS = 2


def learning_rate(config: ClassifierConfig, step: int, total_steps: int) -> float:
    warmup = max(1, int(config.warmup_fraction * total_steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def loss_function(config: ClassifierConfig):
    """Cross-entropy with the strategy's weight on positive classes (label > 0)."""
    weight = get_strategy(config.strategy).positive_weight
    if config.n_classes == 2:
        pos_weight = torch.tensor([weight])
        return lambda logits, labels: F.binary_cross_entropy_with_logits(
            logits[:, 0], labels.float(), pos_weight=pos_weight.to(logits.device))
    class_weight = torch.tensor([1.0] + [weight] * (config.n_classes - 1))
    return lambda logits, labels: F.cross_entropy(logits, labels, weight=class_weight.to(logits.device))


def validation_score(config: ClassifierConfig, probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, str]:
    """(monitored value, higher is better) plus its name: AUC for binary tasks when defined, else -loss."""
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1))))
    if config.n_classes == 2 and len(np.unique(labels)) == 2:
        from evaluation.metrics import auc

        return auc(labels, probs[:, 1]), loss, "val_auc"
    return -loss, loss, "-val_loss"


class _Checkpoints:
    def __init__(self, folder: Path):
        self.folder = folder / "checkpoints"

    def latest(self) -> Path | None:
        found = sorted(self.folder.glob("step-*.pt"))
        return found[-1] if found else None

    def save(self, state: dict, step: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / f"step-{step:07d}.pt") as tmp:
            torch.save(state, tmp)
        for old in sorted(self.folder.glob("step-*.pt"))[:-KEEP_CHECKPOINTS]:
            old.unlink()


def prepare_out(config: ClassifierConfig, out) -> str:
    """'new', 'resume' or 'done' for a run folder; a folder made with another config is refused."""
    out = Path(out)
    if not (out / "config.json").is_file():
        if out.exists() and any(out.iterdir()):
            raise BadInputError("output folder exists and is not a classifier run; choose another --out", out)
        return "new"
    existing = read_config(out)
    if existing != config:
        changed = [k for k, v in config.to_dict().items() if existing.to_dict().get(k) != v]
        raise BadInputError(f"run folder was made with a different config ({', '.join(changed)} differ); "
                            "choose another --out to train anew", out)
    return "done" if (out / "model.safetensors").is_file() else "resume"


def train_one(config: ClassifierConfig, train_frame: pd.DataFrame, val_frame: pd.DataFrame, out,
              cache_dir=None, device: str = "cpu", progress: bool = True) -> dict:
    """Train one model into ``out`` (resuming if a checkpoint is there); returns the run summary."""
    from tqdm import tqdm

    out = Path(out)
    state = prepare_out(config, out)
    if state == "done":
        return {"status": "already finished", **json.loads((out / "summary.json").read_text())}
    out.mkdir(parents=True, exist_ok=True)
    write_config(config, out)
    spec = config.preprocess
    train_labels = task_labels(train_frame, config.task)
    val_labels = task_labels(val_frame, config.task)
    train_scans = load_grid_scans(train_frame, spec, cache_dir, progress, "training scans")
    val_scans = load_grid_scans(val_frame, spec, cache_dir, progress, "validation scans")
    stream = TrainingStream(train_labels, get_strategy(config.strategy), config.batch_size, config.seed)
    total_steps = config.steps if config.budget == "steps" else config.epochs * stream.steps_per_pass()

    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    criterion = loss_function(config)
    checkpoints = _Checkpoints(out)
    step, best, stale, history, best_state = 0, (-math.inf, -math.inf), 0, [], None
    if (latest := checkpoints.latest()) is not None:
        saved = torch.load(latest, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step, best, stale = int(saved["step"]), tuple(saved["best"]), int(saved["stale"])
        history, best_state = json.loads(saved["history"]), saved["best_model"]
    status = f"resumed at step {step}" if step else "trained"

    bar = tqdm(total=total_steps, initial=step, desc=f"training {config.arm or config.strategy}", unit="step",
               disable=not progress, leave=False)
    labels_tensor = torch.as_tensor(train_labels)
    running = []
    while step < total_steps and stale < config.patience:
        model.train()
        counts, rows = stream.batch(train_scans.counts, step)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, total_steps)
        logits = model(normalise(counts).to(device))
        loss = criterion(logits, labels_tensor[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        running.append(loss.item())
        bar.update(1)
        if step % config.eval_every == 0 or step == total_steps:
            probs = predict_probabilities(model, val_scans.counts, device=device)
            value, val_loss, name = validation_score(config, probs, val_labels)
            history.append({"step": step, "train_loss": float(np.mean(running)), "val_loss": val_loss,
                            "monitor": name, "value": value})
            running = []
            if (value, -val_loss) > best:  # ties (e.g. AUC 1.0) go to the lower validation loss
                best, stale = (value, -val_loss), 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
            bar.set_postfix({name: f"{value:.3f}"})
            checkpoints.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                              "best": best, "stale": stale, "history": json.dumps(history),
                              "best_model": best_state, "config": json.dumps(config.to_dict())}, step)
    bar.close()
    model.load_state_dict(best_state)
    summary = _finish(config, model, out, history, step, total_steps, train_frame, val_frame, val_scans,
                      val_labels, device)
    return {"status": status, **summary}


def _finish(config, model, out, history, step, total_steps, train_frame, val_frame, val_scans, val_labels,
            device) -> dict:
    probs = predict_probabilities(model, val_scans.counts, device=device)
    predictions = prediction_frame(val_frame, config, probs, val_labels)
    with atomic_path(out / "val_predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False, float_format="%.6g")
    write_patients(out, train_frame)
    best = max(history, key=lambda h: (h["value"], -h["val_loss"]))
    summary = {"steps_run": step, "step_budget": total_steps, "best_step": best["step"], best["monitor"]: best["value"],
               "stopped_early": step < total_steps, "n_train": len(train_frame),
               "n_train_synthetic": int(is_synthetic(train_frame).sum()), "n_val": len(val_frame)}
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _write_history(out, history)
    plot_curve(history, out / "training_curve.png", title=f"{config.arch} {config.task} {config.strategy}")
    save_model(model, config, out)  # last: its presence marks the run as finished
    return summary


def write_patients(out: Path, train_frame: pd.DataFrame) -> None:
    """The real patients a run trained on, for the leakage check at test time (synthetic rows have none)."""
    real = train_frame[~is_synthetic(train_frame)]
    write_text(out / "train_patients.txt", "\n".join(sorted(set(real["patient_id"].dropna().astype(str)))) + "\n")


def prediction_frame(frame: pd.DataFrame, config: ClassifierConfig, probs: np.ndarray, labels) -> pd.DataFrame:
    """Rows of predictions.csv (DESIGN.md section 5).

    ``label`` and ``score`` are binary for every task: for ``amyloid_grade`` the label is grade >= 2 and the
    score P(grade >= 2), so AUCs compare across tasks; the grade, the predicted grade and the class
    probabilities follow in extra columns.
    """
    labels = np.asarray(labels)
    site = frame["site"] if "site" in frame.columns else pd.Series([pd.NA] * len(frame), index=frame.index)
    table = pd.DataFrame({
        "study_id": frame["study_id"].to_numpy(), "site": site.to_numpy(), "task": config.task,
        "label": (labels >= 2).astype(int) if config.task == "amyloid_grade" else labels,
        "score": score_from_probabilities(probs, config.task), "seed": config.seed,
        "arm": config.arm or config.strategy})
    if config.n_classes > 2:
        table["grade"], table["predicted_grade"] = labels, probs.argmax(axis=1)
        for k in range(config.n_classes):
            table[f"prob_{k}"] = probs[:, k]
    return table


def _write_history(out: Path, history: list[dict]) -> None:
    with atomic_path(out / "history.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "train_loss", "val_loss", "monitor", "value"])
        writer.writeheader()
        writer.writerows(history)


def plot_curve(history: list[dict], path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(steps, [h["train_loss"] for h in history], label="training loss")
    left.plot(steps, [h["val_loss"] for h in history], label="validation loss")
    left.set_xlabel("optimizer step")
    left.legend()
    name = history[0]["monitor"] if history else "monitor"
    right.plot(steps, [h["value"] for h in history], marker=".", color="C2")
    right.set_xlabel("optimizer step")
    right.set_ylabel(name)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def train_run(config: ClassifierConfig, train_frame: pd.DataFrame, val_frame: pd.DataFrame | None, out,
              cache_dir=None, device: str = "cpu", progress: bool = True) -> dict:
    """A classifier run: one model with a validation split, or ``config.folds`` cross-validated models."""
    from evaluation.data import grouped_folds, split_train_val

    out = Path(out)
    if config.folds == 1:
        if val_frame is None:
            train_frame, val_frame = split_train_val(train_frame, config.task, config.seed, config.val_fraction)
        return train_one(config, train_frame, val_frame, out, cache_dir, device, progress)
    if val_frame is not None:
        raise BadInputError("cross-validation (--folds > 1) uses its own validation folds; drop --val")
    prepare_out(config, out)  # refuses a folder made with another config
    out.mkdir(parents=True, exist_ok=True)
    write_config(config, out)
    folds = grouped_folds(train_frame, config.task, config.folds, config.seed)
    summaries, oof = [], []
    for k, held_out in enumerate(folds, start=1):
        keep = np.ones(len(train_frame), bool)
        keep[held_out] = False
        summaries.append(train_one(config, train_frame.iloc[keep], train_frame.iloc[held_out], out / f"fold-{k}",
                                   cache_dir, device, progress))
        fold_predictions = pd.read_csv(out / f"fold-{k}" / "val_predictions.csv")
        oof.append(fold_predictions.assign(fold=k))
    with atomic_path(out / "cv_predictions.csv") as tmp:
        pd.concat(oof).to_csv(tmp, index=False, float_format="%.6g")
    write_patients(out, train_frame)
    summary = {"folds": summaries}
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
