"""Membership-inference statistics and the generator probes (synthscan/membership.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score

from synthscan.errors import BadInputError
from synthscan.membership import (_auc_sorted, denoising_losses, encoder_features, membership_auc, near_copy_rate,
                                  reconstruction_errors)
from synthscan.scan import Scan

# Hanley & McNeil 1982 (Radiology 143:29), Table 1: CT ratings 1-5 of 58 normal and 51 abnormal studies.
HM_NORMAL = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
HM_ABNORMAL = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])


def test_auc_matches_hanley_mcneil_worked_example():
    result = membership_auc(HM_ABNORMAL, HM_NORMAL, "ratings", n_bootstrap=4000)
    assert result.estimate == pytest.approx(0.893, abs=5e-4)
    # Their standard error is 0.032: a normal-theory 95% CI of about +-0.063.
    assert result.ci_high - result.ci_low == pytest.approx(2 * 1.96 * 0.032, abs=0.02)
    assert result.ci_low < result.estimate < result.ci_high
    assert result.p_value == pytest.approx(mannwhitneyu(HM_ABNORMAL, HM_NORMAL, alternative="greater").pvalue)
    assert "AUC 0.893" in result.summary() and "p < 0.0001" in result.summary()


def test_auc_helper_agrees_with_scikit_learn_including_ties():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.integers(0, 6, 40).astype(float), rng.integers(0, 5, 55).astype(float)
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(55)], np.r_[members, nonmembers])
    assert _auc_sorted(members, np.sort(nonmembers)) == pytest.approx(expected)


def test_auc_properties_swap_and_chance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 1, 80), rng.normal(0, 1, 70)
    forward, backward = membership_auc(a, b, seed=3), membership_auc(b, a, seed=3)
    assert forward.estimate + backward.estimate == pytest.approx(1)
    assert forward == membership_auc(a, b, seed=3)  # seeded bootstrap
    same = membership_auc(rng.normal(size=300), rng.normal(size=300))
    assert same.ci_low < 0.5 < same.ci_high and same.p_value > 0.01


def test_auc_input_checks():
    with pytest.raises(BadInputError, match="at least 2"):
        membership_auc([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        membership_auc([1.0, np.nan], [0.0, 1.0])


def test_near_copy_rate_clopper_pearson_and_exact_null():
    none = near_copy_rate("pixel", 0, 10, k=1, n_reference=99)
    assert none.ci_low == 0 and none.ci_high == pytest.approx(0.3085, abs=1e-4)  # 1 - 0.025 ** (1 / 10)
    assert none.p_value == 1 and none.expected_rate == pytest.approx(0.01)
    # The p-value is the tail of the exact distribution of flags among exchangeable scans: check by simulation.
    rng = np.random.default_rng(2)
    m, n_ref, k, flagged = 30, 50, 2, 4
    reference = np.sort(rng.random((20000, n_ref)), axis=1)[:, k - 1]
    counts = (rng.random((20000, m)) < reference[:, None]).sum(axis=1)
    assert near_copy_rate("pixel", flagged, m, k, n_ref).p_value == pytest.approx((counts >= flagged).mean(),
                                                                                 abs=0.01)


# ------------------------------------------------------------------------------------------- model probes

@pytest.fixture(scope="module")
def tiny():
    from synthscan.model.tiny import tiny_model

    return tiny_model(seed=4)


def _scans(n, seed, views=("anterior", "posterior")):
    rng = np.random.default_rng(seed)
    base = np.full((len(views), 64, 16), 3.0)
    base[:, 8:56, 4:12] = 20
    return [Scan(rng.poisson(base * rng.uniform(0.5, 2)).astype(np.float32), (9.6, 9.6), views) for _ in range(n)]


def test_denoising_losses_are_deterministic_and_batch_independent(tiny):
    scans, classes, quick = _scans(5, seed=0), [1, 2, 0, 1, 5], {"sigmas": (0.05, 0.5), "draws": 2}
    together = denoising_losses(tiny, scans, classes, seed=7, **quick)
    alone = np.concatenate([denoising_losses(tiny, [s], [c], seed=7, **quick) for s, c in zip(scans, classes)])
    assert together.shape == (5,) and np.isfinite(together).all() and (together > 0).all()
    assert np.allclose(together, alone, rtol=1e-4)
    assert not np.allclose(together, denoising_losses(tiny, scans, classes, seed=8, **quick))


def test_encoder_features_and_reconstruction(tiny):
    scans = _scans(3, seed=1)
    features = encoder_features(tiny)(scans)
    channels, rows, cols = tiny.latent_shape
    assert features.shape == (3, channels * rows * cols)
    errors = reconstruction_errors(tiny, scans)
    assert errors.shape == (3,) and (errors > 0).all()
    with pytest.raises(BadInputError, match="trained on anterior\\+posterior"):
        encoder_features(tiny)(_scans(1, seed=2, views=("anterior",)))
