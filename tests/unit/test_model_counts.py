"""Poisson sampling of synthetic counts: right law, and continuous in the expected counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from synthscan.model.counts import poisson_continuous


@pytest.mark.parametrize("rate, max_tv", [(0.05, 0.004), (0.8, 0.004), (4.0, 0.006), (9.9, 0.007), (10.0, 0.007),
                                          (25.0, 0.007), (300.0, 0.012)])
def test_counts_follow_the_poisson_law(rate, max_tv):
    """Total-variation distance to Poisson(rate) within sampling noise of 200k draws (+ 0.24% at rate 10)."""
    draws = poisson_continuous(np.full(200_000, rate, np.float32), np.random.default_rng(1)).astype(int)
    assert (draws >= 0).all()
    support = np.arange(max(draws.max(), int(rate * 3 + 30)) + 1)
    observed = np.bincount(draws, minlength=support.size) / draws.size
    tv = 0.5 * np.abs(observed - stats.poisson.pmf(support, rate)).sum()
    assert tv < max_tv
    assert draws.mean() == pytest.approx(rate, rel=0.02, abs=0.003)
    assert draws.var() == pytest.approx(rate, rel=0.03, abs=0.005)


def test_small_rates_are_the_exact_inverse_of_the_poisson_cdf():
    """Below 10 expected counts, count = smallest k with F(k; lambda) >= Phi(z), also where the search is skipped
    (rates and normals straddling every bound of ZERO_BOUNDS)."""
    from scipy.special import ndtr
    from scipy.stats import poisson

    from synthscan.model.counts import ZERO_BOUNDS

    rates = np.concatenate([np.geomspace(1e-4, 9.99, 400), [b * f for b, _ in ZERO_BOUNDS for f in (0.999, 1, 1.001)]])
    rng = np.random.default_rng(5)
    expected = np.repeat(rates, 300).astype(np.float32)
    counts = poisson_continuous(expected, rng)
    z = np.random.default_rng(5).standard_normal(expected.shape, dtype=np.float32)  # the draws it used
    reference = poisson.ppf(ndtr(z.astype(np.float64)), expected.astype(np.float64))
    assert np.array_equal(counts, reference)
    assert all(((z > t - 0.05) & (z < t + 0.05)).any() for _, t in ZERO_BOUNDS)  # the thresholds were exercised


def test_a_tiny_change_of_expected_counts_moves_counts_by_at_most_one():
    rng = np.random.default_rng(0)
    expected = (rng.gamma(1.0, 12.0, size=(2, 256, 64))).astype(np.float32)
    jittered = expected * (1 + rng.normal(0, 2e-6, size=expected.shape)).astype(np.float32)
    a = poisson_continuous(expected, np.random.default_rng(7))
    b = poisson_continuous(jittered, np.random.default_rng(7))
    assert np.abs(a - b).max() <= 1
    assert (a != b).mean() < 1e-3


def test_same_generator_state_same_counts_and_integers():
    expected = np.linspace(0, 50, 1000, dtype=np.float32).reshape(10, 100)
    a = poisson_continuous(expected, np.random.default_rng(3))
    assert np.array_equal(a, poisson_continuous(expected, np.random.default_rng(3)))
    assert np.array_equal(a, np.round(a)) and a.dtype == np.float32
    assert (a[expected == 0] == 0).all()
