"""Simulated readers: responses with a set accuracy and inter-reader correlation, to plan a study and test scoring.

The model is a probit model with a shared case effect (the latent-variable form of correlated binary reads,
as in multi-reader multi-case designs): reader ``r`` tells case ``c`` correctly iff

    mu_r + sqrt(rho) * z_c + sqrt(1 - rho) * e_rc > 0,     z_c, e_rc, u_r ~ N(0, 1) independent,
    mu_r = Phi^-1(accuracy) * sqrt(1 + reader_sd^2) + reader_sd * u_r.

``z_c`` is the case's difficulty, shared by all readers, so ``rho`` is the latent (tetrachoric) correlation
of two readers' correctness on one case; averaged over readers the accuracy is exactly ``accuracy``. Two
readers give the same real/synthetic call when both are right or both wrong, which fixes the expected
kappa (:func:`expected_kappa`); at the paper's accuracy 0.48, kappa 0.18 needs rho of about 0.28
(:func:`correlation_for_kappa`). Diagnoses are right with a set probability (else one of the two other
conditions), quality ratings are a rounded normal around a set mean, confidence grows with the latent margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reader_study.responses import DIAGNOSES
from reader_study.scoring import ReadMatrix, category_table, fleiss_kappa, wilson_interval
from synthscan.errors import BadInputError


@dataclass(frozen=True)
class ReaderModel:
    """How simulated readers behave."""

    accuracy: float = 0.5                    # P(correct real/synthetic call), averaged over readers
    correlation: float = 0.0                 # rho: latent correlation of two readers' correctness on a case
    reader_sd: float = 0.0                   # spread of readers' skill on the probit scale
    diagnostic_accuracy_real: float = 0.8
    diagnostic_accuracy_synthetic: float = 0.8
    quality_real: float = 3.5                # mean Likert rating before rounding
    quality_synthetic: float = 3.5

    def __post_init__(self):
        for name in ("accuracy", "diagnostic_accuracy_real", "diagnostic_accuracy_synthetic"):
            if not 0 < getattr(self, name) < 1:
                raise BadInputError(f"{name} must be strictly between 0 and 1, got {getattr(self, name)}")
        if not 0 <= self.correlation < 1:
            raise BadInputError(f"correlation must be in [0, 1), got {self.correlation}")
        if self.reader_sd < 0:
            raise BadInputError(f"reader_sd must be >= 0, got {self.reader_sd}")
        for name in ("quality_real", "quality_synthetic"):
            if not 1 <= getattr(self, name) <= 5:
                raise BadInputError(f"{name} must be in 1..5, got {getattr(self, name)}")


def _latent(model: ReaderModel, n_readers: int, n_cases: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.stats import norm

    scale = math.sqrt(1 + model.reader_sd ** 2)
    mu = norm.ppf(model.accuracy) * scale + model.reader_sd * rng.standard_normal((n_readers, 1))
    case = rng.standard_normal((1, n_cases))
    noise = rng.standard_normal((n_readers, n_cases))
    return mu + math.sqrt(model.correlation) * case + math.sqrt(1 - model.correlation) * noise


def simulate_reads(truth_synthetic, truth_condition, truth_grade, n_readers: int, model: ReaderModel,
                   rng: np.random.Generator, case_ids=None) -> ReadMatrix:
    """One simulated study: every reader reads every case. Conditions are indices into ``DIAGNOSES``."""
    truth_synthetic = np.asarray(truth_synthetic, bool)
    truth_condition = np.asarray(truth_condition, int)
    truth_grade = np.asarray(truth_grade, int)
    n_cases = len(truth_synthetic)
    latent = _latent(model, n_readers, n_cases, rng)
    correct = latent > 0
    judged_synthetic = np.where(correct, truth_synthetic[None, :], ~truth_synthetic[None, :])
    p_diagnosis = np.where(truth_synthetic, model.diagnostic_accuracy_synthetic, model.diagnostic_accuracy_real)
    right = rng.random((n_readers, n_cases)) < p_diagnosis[None, :]
    other = (truth_condition[None, :] + rng.integers(1, len(DIAGNOSES), (n_readers, n_cases))) % len(DIAGNOSES)
    diagnosis = np.where(right, truth_condition[None, :], other)
    amyloidosis = DIAGNOSES.index("amyloidosis")
    random_grade = rng.integers(1, 4, (n_readers, n_cases))
    grade = np.where(right & (truth_grade[None, :] > 0), truth_grade[None, :], random_grade)
    grade = np.where(diagnosis == amyloidosis, grade, 0)
    mean_quality = np.where(truth_synthetic, model.quality_synthetic, model.quality_real)
    quality = np.clip(np.rint(mean_quality[None, :] + rng.standard_normal((n_readers, n_cases))), 1, 5).astype(int)
    confidence = np.clip(1 + np.rint(1.5 * np.abs(latent)), 1, 5).astype(int)
    case_ids = tuple(case_ids) if case_ids is not None else tuple(f"case-{i:04d}" for i in range(n_cases))
    return ReadMatrix(tuple(f"reader-{r + 1}" for r in range(n_readers)), case_ids, truth_synthetic,
                      truth_condition, truth_grade, judged_synthetic, diagnosis, grade, quality, confidence)


def simulate_responses(key, model: ReaderModel, n_readers: int | None, seed: int) -> list[tuple[str, pd.DataFrame]]:
    """Response tables, in the viewer's export format, for the first ``n_readers`` packets of a key."""
    packets = list(key.packets.values())
    n_readers = len(packets) if n_readers is None else n_readers
    if not 1 <= n_readers <= len(packets):
        raise BadInputError(f"--readers must be 1..{len(packets)} (packets in {key.path}), got {n_readers}")
    truth = key.truth
    condition = np.array([DIAGNOSES.index(c) for c in truth["condition"]])
    grade = truth["amyloid_grade"].fillna(0).to_numpy(dtype=int)
    reads = simulate_reads(truth["synthetic"].to_numpy(bool), condition, grade, n_readers, model,
                           np.random.default_rng(seed), case_ids=truth.index)
    column = {case: i for i, case in enumerate(truth.index)}
    tables = []
    for r, packet in enumerate(packets[:n_readers]):
        rows = []
        for position, case in enumerate(packet.case_ids, start=1):
            c = column[case]
            diagnosis = DIAGNOSES[reads.diagnosis[r, c]]
            rows.append({
                "study_id": key.study_id, "packet_id": packet.packet_id, "reader": packet.reader, "case_id": case,
                "position": position,
                "judged_source": "synthetic" if reads.judged_synthetic[r, c] else "real",
                "diagnosis": diagnosis,
                "amyloid_grade": int(reads.grade[r, c]) if diagnosis == "amyloidosis" else "",
                "quality": int(reads.quality[r, c]), "confidence": int(reads.confidence[r, c]),
                "seconds": "", "simulated": 1})
        tables.append((packet.packet_id, pd.DataFrame(rows)))
    return tables


# ---------------------------------------------------------------- planning


def _both(mu: float, rho: float) -> float:
    """P(two readers both correct) = Phi2(mu, mu; rho)."""
    from scipy.stats import multivariate_normal

    return float(multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([mu, mu]))


def expected_kappa(accuracy: float, correlation: float, synthetic_fraction: float = 0.5) -> float:
    """Expected kappa of two readers' real/synthetic calls under the model (reader_sd = 0, many cases)."""
    from scipy.stats import norm

    mu = norm.ppf(accuracy)
    agreement = _both(mu, correlation) + _both(-mu, correlation)
    called = synthetic_fraction * accuracy + (1 - synthetic_fraction) * (1 - accuracy)
    chance = called ** 2 + (1 - called) ** 2
    return (agreement - chance) / (1 - chance)


def correlation_for_kappa(kappa: float, accuracy: float, synthetic_fraction: float = 0.5) -> float:
    """The latent correlation rho that gives an expected kappa (e.g. the paper's 0.18 at accuracy 0.48)."""
    from scipy.optimize import brentq

    low, high = expected_kappa(accuracy, 0.0, synthetic_fraction), expected_kappa(accuracy, 0.999,
                                                                                   synthetic_fraction)
    if not low <= kappa <= high:
        raise BadInputError(f"kappa {kappa} is out of reach at accuracy {accuracy} ({low:.3f} to {high:.3f})")
    return float(brentq(lambda rho: expected_kappa(accuracy, rho, synthetic_fraction) - kappa, 0.0, 0.999,
                        xtol=1e-6))


def design_effect_sd(accuracy: float, correlation: float, n_readers: int, n_cases: int) -> float:
    """SD of pooled accuracy from the design effect 1 + (R - 1) * ICC (reader_sd = 0)."""
    from scipy.stats import norm

    mu = norm.ppf(accuracy)
    icc = (_both(mu, correlation) - accuracy ** 2) / (accuracy * (1 - accuracy))
    return math.sqrt(accuracy * (1 - accuracy) / (n_readers * n_cases) * (1 + (n_readers - 1) * icc))


def plan(cases=(100, 200, 400), readers=(2, 4, 6), model: ReaderModel = ReaderModel(),
         synthetic_fraction: float = 0.5, n_sim: int = 500, seed: int = 0) -> pd.DataFrame:
    """Expected 95% CI widths (pooled accuracy, Fleiss' kappa) and disagreements for each design.

    Widths are 2 x 1.96 x the SD across simulated studies, i.e. the width a correct interval would have;
    ``wilson_width`` is the mean Wilson width, which ignores that reads of a case are correlated.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n_cases in cases:
        n_synthetic = int(round(n_cases * synthetic_fraction))
        truth = np.zeros(n_cases, bool)
        truth[:n_synthetic] = True
        for n_readers in readers:
            accuracy, kappa, disagree, wilson = [], [], [], []
            for _ in range(n_sim):
                correct = _latent(model, n_readers, n_cases, rng) > 0
                calls = np.where(correct, truth[None, :], ~truth[None, :])
                accuracy.append(correct.mean())
                low, high = wilson_interval(int(correct.sum()), correct.size)
                wilson.append(high - low)
                if n_readers > 1:
                    kappa.append(fleiss_kappa(category_table(calls.astype(int), 2)))
                disagree.append((calls.any(axis=0) & ~calls.all(axis=0)).sum())
            rows.append({
                "cases": n_cases, "readers": n_readers, "accuracy_mean": float(np.mean(accuracy)),
                "accuracy_ci_width": 2 * 1.959964 * float(np.std(accuracy, ddof=1)),
                "wilson_width": float(np.mean(wilson)),
                "kappa_mean": float(np.nanmean(kappa)) if kappa else math.nan,
                "kappa_ci_width": 2 * 1.959964 * float(np.nanstd(kappa, ddof=1)) if kappa else math.nan,
                "disagreements_mean": float(np.mean(disagree))})
    return pd.DataFrame(rows)


def write_simulated_responses(key, model: ReaderModel, n_readers: int | None, seed: int, out) -> list[Path]:
    """One ``simulated-<packet>.csv`` per packet in ``out``; existing files are never overwritten."""
    from reader_study.responses import write_responses

    out = Path(out)
    tables = simulate_responses(key, model, n_readers, seed)
    paths = [out / f"simulated-{packet_id}.csv" for packet_id, _ in tables]
    for path in paths:
        if path.exists():
            raise BadInputError("refusing to overwrite an existing response file", path)
    out.mkdir(parents=True, exist_ok=True)
    for path, (_, table) in zip(paths, tables):
        write_responses(table, path)
    return paths


def write_plan(table: pd.DataFrame, out) -> Path:
    """``plan.csv`` in ``out`` (atomically)."""
    from synthscan.io.atomic import atomic_path

    path = Path(out) / "plan.csv"
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return path
