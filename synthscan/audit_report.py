"""``synthscan audit`` as one library call: read the manifests, audit, write the report folder atomically.

Outputs (DESIGN.md: pseudonymous study ids only; nothing of the DICOM headers is ever read into them):
``audit.md``, ``audit.json`` (every number, with CIs), ``nearest_neighbours.csv`` (one row per synthetic
scan), ``reference_neighbours.csv`` (the real-vs-real distances that calibrate the thresholds),
``distances.png`` (histograms) and ``flagged/NNN_<study_id>.png`` (synthetic | nearest training scan |
aligned difference) for the flagged scans, closest first.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from synthscan import __version__
from synthscan.errors import BadInputError
from synthscan.io.dicom import read_scan
from synthscan.io.manifest import read_manifest, scan_path
from synthscan.audit_markdown import markdown
from synthscan.membership import membership_auc, near_copy_rate
from synthscan.privacy import (DEFAULT_FALSE_POSITIVE_RATE, DEFAULT_GRID, FEATURES, PIXEL, Embedding,
                               MemorizationAuditor, best_translation, criterion_values)
from synthscan.render import render_scan
from synthscan.scan import VIEW_SETS, Scan

ALPHA = 0.05
SPACE_TEXT = {PIXEL: "pixel space (body-aligned sqrt counts, 1 - NCC)",
              FEATURES: "learned feature space (1 - cosine of centred features)"}


@dataclass
class ScanSet:
    """One input manifest and what the audit made of it."""

    role: str
    path: Path
    frame: pd.DataFrame
    embedding: Embedding | None = None
    probes: dict = field(default_factory=dict)  # attack name -> per-scan membership score

    @property
    def ids(self) -> np.ndarray:
        return self.frame["study_id"].astype(str).to_numpy()


def load_set(path, role: str) -> ScanSet:
    frame = read_manifest(path)
    if frame.empty:
        raise BadInputError(f"the {role} manifest has no scans", path)
    return ScanSet(role, Path(path), frame.reset_index(drop=True))


def check_sets(samples: ScanSet, train: ScanSet, holdout: ScanSet | None) -> list[str]:
    """Refuse inputs that would make the audit meaningless; return warnings worth a line in the report."""
    sets = [s for s in (samples, train, holdout) if s is not None]
    for scan_set in sets:
        blank = scan_set.frame["views"].isna().to_numpy()
        if blank.any():
            raise BadInputError(f"row {int(np.flatnonzero(blank)[0]) + 2}: empty 'views'", scan_set.path)
    views = {s.role: sorted(set(s.frame["views"])) for s in sets}
    if len({tuple(v) for v in views.values()}) != 1 or any(len(v) != 1 for v in views.values()):
        raise BadInputError(f"all scans of an audit must have the same views; found {views}", samples.path)
    for other in (train, holdout):
        if other is None:
            continue
        shared = sorted(set(samples.ids) & set(other.ids))
        if shared:
            raise BadInputError(f"study id(s) {shared[:3]} are both synthetic and {other.role}", samples.path)
    if holdout is not None:
        shared = sorted(set(holdout.ids) & set(train.ids))
        if shared:
            raise BadInputError(f"study id(s) {shared[:3]} are in both the training and held-out manifests",
                                holdout.path)
    for scan_set in sets:  # fail before hours of reading, naming the first missing file
        for row in scan_set.frame.index:
            if not scan_path(scan_set.frame, row).is_file():
                raise BadInputError(f"row {row + 2}: DICOM file {scan_set.frame.at[row, 'path']!r} not found",
                                    scan_set.path)
    warnings = []
    if "synthetic" in samples.frame and (samples.frame["synthetic"] == 0).any():
        warnings.append(f"{int((samples.frame['synthetic'] == 0).sum())} row(s) of the samples manifest are "
                        "marked synthetic = 0 (real scans)")
    if holdout is None:
        warnings.append("no held-out manifest: thresholds are calibrated leave-one-patient-out on the training "
                        "scans, and membership inference is not tested")
    return warnings


def _scans(scan_set: ScanSet, rows=None):
    frame = scan_set.frame
    for row in frame.index if rows is None else rows:
        yield read_scan(scan_path(frame, row), views=VIEW_SETS[frame.at[row, "views"]])


def embed_set(auditor: MemorizationAuditor, scan_set: ScanSet, model=None, progress: bool = True) -> None:
    """Read a manifest's scans once: align/featurise them and, with a model, run its membership probes."""
    from tqdm import tqdm

    from synthscan.membership import denoising_losses, reconstruction_errors

    parts, losses, errors = [], [], []
    rows = list(scan_set.frame.index)
    with tqdm(total=len(rows), desc=f"reading {scan_set.role}", unit="scan", disable=not progress) as bar:
        for start in range(0, len(rows), auditor.batch_size):
            batch_rows = rows[start:start + auditor.batch_size]
            batch = list(_scans(scan_set, batch_rows))
            parts.append(auditor.embed(batch))
            if model is not None:
                losses.append(denoising_losses(model, batch, _class_ids(scan_set.frame.loc[batch_rows])))
                errors.append(reconstruction_errors(model, batch))
            bar.update(len(batch))
    scan_set.embedding = Embedding.concat(parts)
    if model is not None:  # lower loss / error = more member-like
        scan_set.probes = {"denoising-loss": -np.concatenate(losses), "reconstruction": -np.concatenate(errors)}


def fit_auditor(train_path, holdout_path=None, features=None, false_positive_rate=DEFAULT_FALSE_POSITIVE_RATE,
                grid=DEFAULT_GRID, progress: bool = True) -> MemorizationAuditor:
    """A :class:`MemorizationAuditor` fitted on manifests (e.g. for ``synthscan sample --audit``)."""
    train = load_set(train_path, "train")
    holdout = None if holdout_path is None else load_set(holdout_path, "held-out")
    auditor = MemorizationAuditor(features, grid, false_positive_rate)
    for scan_set in (train, holdout):
        if scan_set is not None:
            embed_set(auditor, scan_set, None, progress)
    return auditor.fit_embedded(train.embedding, train.frame["patient_id"].astype(str),
                                None if holdout is None else holdout.embedding,
                                None if holdout is None else holdout.frame["patient_id"].astype(str))


def _class_ids(frame: pd.DataFrame) -> list[int]:
    from synthscan.model.conditions import class_from_labels

    return [class_from_labels(frame.at[row, "metastasis"] if "metastasis" in frame else None,
                              frame.at[row, "amyloid_grade"] if "amyloid_grade" in frame else None)
            for row in frame.index]


def _quantiles(values) -> dict:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    points = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 1.0)
    return {f"q{int(100 * q):02d}": float(np.quantile(values, q)) for q in points} | {"n": int(values.size)}


def data_copying_test(synthetic, reference) -> dict:
    """Are synthetic-to-train NN distances smaller than real-to-train ones? One-sided Mann-Whitney U.

    The data-copying test of Meehan, Chaudhuri & Dasgupta 2020 ("A non-parametric test to detect data-copying
    in generative models", AISTATS), on the whole sample rather than per cell.
    """
    from scipy.stats import mannwhitneyu

    synthetic, reference = np.asarray(synthetic, float), np.asarray(reference, float)
    synthetic, reference = synthetic[np.isfinite(synthetic)], reference[np.isfinite(reference)]
    test = mannwhitneyu(synthetic, reference, alternative="less")
    return {"probability_synthetic_closer": float(1 - test.statistic / (len(synthetic) * len(reference))),
            "p_value": float(test.pvalue)}


def audit(samples_path, train_path, out, holdout_path=None, model=None, features=None, features_name=None,
          false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE, grid=DEFAULT_GRID, max_pairs: int = 50,
          seed: int = 0, progress: bool = True, overwrite: bool = False, save_index: bool = False) -> dict:
    """Run the whole audit and write the report folder ``out``; return the numbers of audit.json.

    With ``save_index`` the fitted auditor is also saved to ``out/index`` for ``synthscan sample --audit``.
    """
    out = Path(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError("output folder exists and is not empty (use --overwrite to replace it)", out)
    samples, train = load_set(samples_path, "samples"), load_set(train_path, "train")
    holdout = None if holdout_path is None else load_set(holdout_path, "held-out")
    warnings = check_sets(samples, train, holdout)
    if model is not None and features is None:
        from synthscan.membership import encoder_features

        features, features_name = encoder_features(model), features_name or "generator encoder"
    auditor = MemorizationAuditor(features, grid, false_positive_rate)
    embed_set(auditor, train, model if holdout is not None else None, progress)
    if holdout is not None:
        embed_set(auditor, holdout, model, progress)
    auditor.fit_embedded(train.embedding, train.frame["patient_id"].astype(str),
                         None if holdout is None else holdout.embedding,
                         None if holdout is None else holdout.frame["patient_id"].astype(str))
    embed_set(auditor, samples, None, progress)
    from tqdm import tqdm

    with tqdm(total=len(samples.frame), desc="nearest neighbours", unit="scan", disable=not progress) as bar:
        neighbours = auditor.neighbours(samples.embedding, progress=bar)
    flags = auditor.flags(neighbours)
    table = neighbour_table(auditor, samples, train, neighbours, flags)
    result = summarize(auditor, samples, train, holdout, neighbours, flags, seed, warnings, features_name, model)
    with _staging(out, overwrite) as folder:
        table.to_csv(folder / "nearest_neighbours.csv", index=False, float_format="%.6g")
        reference_table(auditor, train, holdout).to_csv(folder / "reference_neighbours.csv", index=False,
                                                       float_format="%.6g")
        histogram_figure(auditor, neighbours, folder / "distances.png")
        result["flagged_pairs"] = write_pairs(auditor, samples, train, table, neighbours, folder / "flagged",
                                              max_pairs)
        (folder / "audit.json").write_text(json.dumps(_finite(result), indent=2) + "\n")
        (folder / "audit.md").write_text(markdown(result))
        if save_index:
            auditor.save(folder / "index", model.hash if model is not None and features_name == "generator encoder"
                         else None)
    return result


def neighbour_table(auditor, samples: ScanSet, train: ScanSet, neighbours, flags) -> pd.DataFrame:
    """One row per synthetic scan: its nearest training scans, distances, ratios and flags per rule."""
    table = pd.DataFrame({"study_id": samples.ids})
    for space, found in neighbours.items():
        table[f"{space}_nearest_study_id"] = np.where(found.index >= 0, train.ids[found.index], "")
        table[f"{space}_distance"] = found.distance
        table[f"{space}_second_study_id"] = np.where(found.second_index >= 0, train.ids[found.second_index], "")
        table[f"{space}_second_distance"] = found.second_distance
        table[f"{space}_ratio"] = found.ratio
        for rule in auditor.rules_:
            if rule.space == space:
                table[f"{space}_{rule.criterion}_flagged"] = flags[rule.name].astype(int)
    table["flagged"] = np.logical_or.reduce(list(flags.values())).astype(int)
    return table


def reference_table(auditor, train: ScanSet, holdout: ScanSet | None) -> pd.DataFrame:
    queries = train if holdout is None else holdout
    table = pd.DataFrame({"study_id": queries.ids, "role": queries.role})
    for space, found in auditor.reference_neighbours_.items():
        table[f"{space}_nearest_study_id"] = np.where(found.index >= 0, train.ids[found.index], "")
        table[f"{space}_distance"] = found.distance
        table[f"{space}_ratio"] = found.ratio
    return table


def summarize(auditor, samples, train, holdout, neighbours, flags, seed, warnings, features_name, model) -> dict:
    m = len(samples.frame)
    spaces, rules, tests = {}, [], []
    for space, found in neighbours.items():
        reference = auditor.reference_neighbours_[space]
        copying = data_copying_test(found.distance, reference.distance)
        spaces[space] = {
            "description": SPACE_TEXT[space] + (f": {features_name}" if space == FEATURES and features_name else ""),
            "synthetic_to_train": _quantiles(found.distance), "real_to_train": _quantiles(reference.distance),
            "synthetic_ratio": _quantiles(found.ratio), "real_ratio": _quantiles(reference.ratio),
            "data_copying_test": copying,
            "ratio_below_one_third": int(np.sum(found.ratio < 1 / 3)),
            "reference_ratio_below_one_third": int(np.sum(reference.ratio < 1 / 3))}
        for rule in (r for r in auditor.rules_ if r.space == space):
            rate = near_copy_rate(rule.name, int(flags[rule.name].sum()), m, rule.k, rule.n_reference)
            rules.append({"rule": rule.name, "space": space, "criterion": rule.criterion, "threshold": rule.threshold,
                          "order_statistic_k": rule.k, "n_reference": rule.n_reference,
                          "near_copies": rate.to_dict(), "summary": rate.summary()})
            tests.append((f"near-copies ({rule.name})", rate.p_value))
        tests.append((f"data-copying ({space})", copying["p_value"]))
    n_flagged = int(np.logical_or.reduce(list(flags.values())).sum())
    membership = []
    if holdout is not None:
        distances = {role: auditor.distances_to(s.embedding, samples.embedding) for role, s in
                     (("train", train), ("holdout", holdout))}
        for space in auditor.spaces:
            membership.append(membership_auc(-distances["train"][space], -distances["holdout"][space],
                                             f"nn-distance ({space})", seed=seed))
        for attack in train.probes:
            membership.append(membership_auc(train.probes[attack], holdout.probes[attack], attack, seed=seed))
    tests += [(f"membership {r.attack}", r.p_value) for r in membership]
    alpha_per_test = ALPHA / len(tests)
    return {
        "synthscan_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inputs": {s.role: {"manifest": str(s.path), "n_scans": len(s.frame),
                            "n_patients": int(s.frame["patient_id"].nunique())}
                   for s in (samples, train, holdout) if s is not None}
        | ({"model": {"hash": getattr(model, "hash", None)}} if model is not None else {}),
        "settings": {"grid": list(auditor.grid), "shifts": [list(s) for s in auditor.shifts],
                     "false_positive_rate": auditor.false_positive_rate,
                     "false_positive_rate_per_rule": auditor.false_positive_rate / len(auditor.rules_),
                     "calibration": auditor.calibration_, "spaces": list(auditor.spaces), "seed": seed,
                     "alpha": ALPHA, "alpha_per_test": alpha_per_test},
        "spaces": spaces,
        "rules": rules,
        "near_copies": {"flagged": n_flagged, "n": m, "rate": n_flagged / m,
                        "expected_rate_at_most": float(sum(r.expected_rate for r in auditor.rules_))},
        "membership": [r.to_dict() | {"summary": r.summary()} for r in membership],
        "tests": [{"test": name, "p_value": p, "significant": bool(p < alpha_per_test)} for name, p in tests],
        "memorization_detected": any(p < alpha_per_test for _, p in tests),
        "warnings": warnings,
    }


def histogram_figure(auditor, neighbours, path) -> None:
    """Synthetic vs real nearest-neighbour distances (log scale) and ratios d1/d2 per space, with thresholds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5 * len(neighbours), 7.2), dpi=110)
    FigureCanvasAgg(figure)
    for column, (space, found) in enumerate(neighbours.items()):
        reference = auditor.reference_neighbours_[space]
        for row, rule in enumerate(r for r in auditor.rules_ if r.space == space):
            axes = figure.add_subplot(2, len(neighbours), row * len(neighbours) + column + 1)
            synthetic, real = (criterion_values(f, rule.criterion) for f in (found, reference))
            synthetic, real = synthetic[np.isfinite(synthetic)], real[np.isfinite(real)]
            values = np.r_[synthetic, real]
            if rule.criterion == "distance":
                positive = values[values > 0]
                floor = positive.min() / 2 if positive.size else 1e-6  # exact copies (0) land in the first bin
                bins = np.geomspace(floor, max(positive.max() if positive.size else 1.0, floor * 10), 40)
                axes.set_xscale("log")
            else:
                floor, bins = 0.0, np.linspace(0, max(1.0, float(values.max(initial=1.0))), 40)
            for data, label in ((real, "real to train"), (synthetic, "synthetic to train")):
                axes.hist(np.clip(data, floor, None), bins=bins, alpha=0.6, label=f"{label} (n = {len(data)})",
                          weights=np.full(len(data), 1 / max(len(data), 1)))
            axes.axvline(rule.threshold, color="k", linestyle="--", linewidth=1, label="near-copy threshold")
            axes.set_xlabel(f"{space}: " + ("nearest-neighbour distance d1" if rule.criterion == "distance" else
                                            "memorization ratio d1/d2"))
            axes.set_ylabel("share of scans")
            axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]


def write_pairs(auditor, samples: ScanSet, train: ScanSet, table, neighbours, folder: Path, max_pairs: int) -> list:
    """Side-by-side PNGs of flagged pairs (the most clearly flagged first); list of written files."""
    flagged = table.index[table["flagged"] == 1]
    if len(flagged) == 0 or max_pairs <= 0:
        return []
    folder.mkdir()

    def strongest(row):  # the rule that flags this scan by the widest margin: (value / threshold, rule)
        fired = [r for r in auditor.rules_ if table.at[row, f"{r.space}_{r.criterion}_flagged"]]
        return min((float(criterion_values(neighbours[r.space], r.criterion)[row]) / max(r.threshold, 1e-12), i)
                   for i, r in enumerate(auditor.rules_) if r in fired)

    written = []
    for rank, row in enumerate(sorted(flagged, key=strongest)[:max_pairs]):
        rule = auditor.rules_[strongest(row)[1]]
        nearest = int(neighbours[rule.space].index[row])
        synthetic_scan = next(_scans(samples, [row]))
        training_scan = next(_scans(train, [nearest]))
        moved, distance = best_translation(samples.embedding.pixel[row], train.embedding.pixel[nearest],
                                           auditor.shifts)
        name = f"{rank + 1:03d}_{_safe_name(samples.ids[row])}.png"
        value = table.at[row, f"{rule.space}_{rule.criterion}"]
        pair_figure(synthetic_scan, training_scan, moved - train.embedding.pixel[nearest],
                    [f"synthetic {samples.ids[row]}",
                     f"nearest training {train.ids[nearest]} ({rule.name} {value:.4g} < {rule.threshold:.4g})",
                     f"difference (aligned sqrt counts, pixel d = {distance:.4g})"]).save(folder / name)
        written.append({"study_id": samples.ids[row], "train_study_id": train.ids[nearest], "rule": rule.name,
                        "file": f"flagged/{name}"})
    return written


def pair_figure(synthetic: Scan, training: Scan, difference: np.ndarray, captions, height: int = 512):
    """synthetic | nearest training scan | difference (red: synthetic brighter), captions under each panel."""
    import textwrap

    from matplotlib import colormaps
    from PIL import Image, ImageDraw, ImageFont

    panels = [render_scan(scan).convert("RGB") for scan in (synthetic, training)]
    panels = [p.resize((max(1, round(p.width * height / p.height)), height), Image.BILINEAR) for p in panels]
    limit = max(float(np.percentile(np.abs(difference), 99.5)), 1e-6)
    gap = np.full((difference.shape[1], 1), np.nan)
    strip = np.concatenate([part for view in difference for part in (view, gap)][:-1], axis=1)
    colours = colormaps["RdBu_r"](np.clip(0.5 + strip / (2 * limit), 0, 1))
    colours[np.isnan(strip)] = 1.0
    panels.append(Image.fromarray((colours[..., :3] * 255).astype(np.uint8)).resize(
        (panels[1].width, height), Image.NEAREST))
    font = ImageFont.load_default()
    wrapped = [textwrap.fill(text, max(12, panel.width // 6)) for text, panel in zip(captions, panels)]
    caption_height = 12 * max(t.count("\n") + 1 for t in wrapped) + 8
    pad = 8
    canvas = Image.new("RGB", (sum(p.width for p in panels) + pad * (len(panels) + 1), height + caption_height + 2 * pad),
                       "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for panel, text in zip(panels, wrapped):
        canvas.paste(panel, (x, pad))
        draw.multiline_text((x, pad + height + 4), text, fill="black", font=font, spacing=2)
        x += panel.width + pad
    return canvas


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


class _staging:
    """A temporary folder beside ``out`` that replaces ``out`` only when the block succeeds."""

    def __init__(self, out: Path, overwrite: bool):
        self.out, self.overwrite = Path(out), overwrite

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent))
        return self.tmp

    def __exit__(self, kind, error, traceback):
        try:
            if kind is None:
                os.chmod(self.tmp, 0o755)
                old = None
                if self.out.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".old", dir=self.out.parent))
                    os.replace(self.out, old / "previous")
                os.replace(self.tmp, self.out)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False
