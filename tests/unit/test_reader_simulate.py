"""Simulated readers: they have the accuracy and agreement they were given, and plan() matches theory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reader_study.scoring import category_table, fleiss_kappa
from reader_study.simulate import (ReaderModel, correlation_for_kappa, design_effect_sd, expected_kappa, plan,
                                   simulate_reads)
from synthscan.errors import BadInputError


def _truth(n_cases):
    return np.arange(n_cases) % 2 == 0, np.arange(n_cases) % 3, np.where(np.arange(n_cases) % 3 == 2, 2, 0)


@pytest.mark.parametrize("accuracy, correlation", [(0.5, 0.0), (0.7, 0.3), (0.48, 0.28)])
def test_simulated_readers_have_the_set_accuracy_and_kappa(accuracy, correlation):
    synthetic, condition, grade = _truth(4000)
    reads = simulate_reads(synthetic, condition, grade, 6, ReaderModel(accuracy, correlation),
                           np.random.default_rng(11))
    assert reads.correct.mean() == pytest.approx(accuracy, abs=0.015)           # SE ~ 0.005 incl. clustering
    kappa = fleiss_kappa(category_table(reads.judged_synthetic.astype(int), 2))
    assert kappa == pytest.approx(expected_kappa(accuracy, correlation), abs=0.03)


def test_expected_kappa_closed_form_at_chance():
    # At accuracy 0.5, two readers agree with probability 1/2 + arcsin(rho)/pi, so kappa = 2 arcsin(rho)/pi.
    for rho in (0.0, 0.2, 0.5, 0.9):
        assert expected_kappa(0.5, rho) == pytest.approx(2 * math.asin(rho) / math.pi, abs=1e-6)


def test_correlation_for_kappa_inverts_expected_kappa():
    rho = correlation_for_kappa(0.18, 0.48)
    assert 0.2 < rho < 0.35
    assert expected_kappa(0.48, rho) == pytest.approx(0.18, abs=1e-5)
    for unreachable in (-0.1, 0.99):      # rho in [0, 1) gives kappa in [0, 0.97] at chance accuracy
        with pytest.raises(BadInputError, match="out of reach"):
            correlation_for_kappa(unreachable, 0.5)


def test_diagnoses_and_grades_follow_the_model():
    synthetic, condition, grade = _truth(3000)
    model = ReaderModel(diagnostic_accuracy_real=0.9, diagnostic_accuracy_synthetic=0.6, quality_real=4.0,
                        quality_synthetic=2.5)
    reads = simulate_reads(synthetic, condition, grade, 3, model, np.random.default_rng(2))
    right = reads.diagnosis == condition[None, :]
    assert right[:, ~synthetic].mean() == pytest.approx(0.9, abs=0.02)
    assert right[:, synthetic].mean() == pytest.approx(0.6, abs=0.02)
    assert ((reads.grade > 0) == (reads.diagnosis == 2)).all()          # a grade exactly when amyloidosis
    assert reads.quality[:, synthetic].mean() < reads.quality[:, ~synthetic].mean() - 1
    assert set(np.unique(reads.quality)) <= {1, 2, 3, 4, 5} and set(np.unique(reads.confidence)) <= {1, 2, 3, 4, 5}


def test_reader_spread_keeps_the_average_accuracy():
    synthetic, condition, grade = _truth(2000)
    reads = simulate_reads(synthetic, condition, grade, 400, ReaderModel(0.7, 0.0, reader_sd=1.0),
                           np.random.default_rng(4))
    per_reader = reads.correct.mean(axis=1)
    assert per_reader.mean() == pytest.approx(0.7, abs=0.02)
    assert per_reader.std() > 0.15


def test_plan_widths_follow_the_design_effect_and_shrink_with_size():
    model = ReaderModel(0.55, 0.3)
    table = plan(cases=(100, 400), readers=(2, 6), model=model, n_sim=400, seed=0)
    for row in table.itertuples():
        theory = 2 * 1.959964 * design_effect_sd(0.55, 0.3, row.readers, row.cases)
        assert row.accuracy_ci_width == pytest.approx(theory, rel=0.12)
        assert row.accuracy_ci_width > row.wilson_width        # Wilson ignores the shared cases
    width = table.set_index(["cases", "readers"])["accuracy_ci_width"]
    assert width[(400, 2)] < width[(100, 2)] and width[(400, 6)] < width[(400, 2)]
    kappa = table.set_index(["cases", "readers"])["kappa_ci_width"]
    assert kappa[(400, 6)] < kappa[(100, 2)]


@pytest.mark.parametrize("field, value", [("accuracy", 1.0), ("accuracy", 0.0), ("correlation", 1.0),
                                          ("correlation", -0.1), ("reader_sd", -1.0), ("quality_real", 6.0)])
def test_reader_model_rejects_impossible_settings(field, value):
    with pytest.raises(BadInputError, match=field):
        ReaderModel(**{field: value})
