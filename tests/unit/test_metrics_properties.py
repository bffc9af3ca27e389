"""Property tests (hypothesis) for the AUC, DeLong and Wilson statistics of evaluation/metrics.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from evaluation import metrics
from evaluation.delong import delong_covariance

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def scored_cases(draw, min_per_class=2, max_size=40):
    """Labels with at least ``min_per_class`` of each class and integer-valued scores (so ties happen)."""
    n_positive = draw(st.integers(min_per_class, max_size))
    n_negative = draw(st.integers(min_per_class, max_size))
    labels = np.r_[np.ones(n_positive), np.zeros(n_negative)]
    order = draw(st.permutations(range(len(labels))))
    scores = draw(st.lists(st.integers(-20, 20), min_size=len(labels), max_size=len(labels)))
    return labels[list(order)], np.asarray(scores, dtype=float)


@SETTINGS
@given(scored_cases(min_per_class=1))
def test_auc_is_a_probability_and_matches_sklearn(cases):
    labels, scores = cases
    value = metrics.auc(labels, scores)
    assert 0 <= value <= 1
    assert value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@SETTINGS
@given(scored_cases(min_per_class=1))
def test_auc_of_negated_scores_is_one_minus_auc(cases):
    labels, scores = cases
    assert metrics.auc(labels, -scores) == pytest.approx(1 - metrics.auc(labels, scores), abs=1e-12)


@SETTINGS
@given(scored_cases(), st.floats(0.1, 5), st.floats(-3, 3))
def test_auc_and_delong_ci_are_invariant_under_monotone_transforms(cases, scale, shift):
    labels, scores = cases
    transformed = np.exp(scores / 10) * scale + shift  # strictly increasing: same ranks, same ties
    a, b = metrics.delong_auc(labels, scores), metrics.delong_auc(labels, transformed)
    assert (b.estimate, b.ci_low, b.ci_high) == pytest.approx((a.estimate, a.ci_low, a.ci_high), abs=1e-12)


@SETTINGS
@given(scored_cases(), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_ci_contains_the_estimate_within_the_unit_interval(cases, level):
    labels, scores = cases
    result = metrics.delong_auc(labels, scores, level)
    assert 0 <= result.ci_low <= result.estimate <= result.ci_high <= 1
    wider = metrics.delong_auc(labels, scores, min(0.999, level + 0.009))
    assert wider.ci_low <= result.ci_low and wider.ci_high >= result.ci_high


@SETTINGS
@given(scored_cases(max_size=15))
def test_delong_variance_equals_the_quadratic_definition(cases):
    labels, scores = cases
    x, y = scores[labels == 1], scores[labels == 0]
    kernel = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])  # psi(X_i, Y_j), DeLong 1988
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    expected = v10.var(ddof=1) / len(x) + v01.var(ddof=1) / len(y)
    aucs, covariance = delong_covariance(labels == 1, scores)
    assert aucs[0] == pytest.approx(kernel.mean(), abs=1e-12)
    assert covariance[0, 0] == pytest.approx(expected, abs=1e-12)


@SETTINGS
@given(scored_cases(), st.lists(st.integers(-20, 20), min_size=80, max_size=80))
def test_delong_test_is_antisymmetric_and_its_ci_contains_the_difference(cases, other):
    labels, scores_a = cases
    scores_b = np.asarray(other[: len(labels)], dtype=float)
    ab, ba = metrics.delong_test(labels, scores_a, scores_b), metrics.delong_test(labels, scores_b, scores_a)
    assert ab.estimate == pytest.approx(-ba.estimate, abs=1e-12)
    assert ab.p_value == pytest.approx(ba.p_value, abs=1e-12) and 0 <= ab.p_value <= 1
    assert ab.ci_low <= ab.estimate <= ab.ci_high
    assert ab.auc_a == pytest.approx(metrics.auc(labels, scores_a), abs=1e-12)


@SETTINGS
@given(st.integers(0, 500), st.integers(1, 500), st.sampled_from([0.9, 0.95]))
def test_wilson_interval_contains_the_proportion(successes, total, level):
    successes = min(successes, total)
    result = metrics.wilson_interval(successes, total, level)
    assert 0 <= result.ci_low <= result.estimate <= result.ci_high <= 1
    mirrored = metrics.wilson_interval(total - successes, total, level)
    assert mirrored.ci_low == pytest.approx(1 - result.ci_high, abs=1e-12)


@SETTINGS
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_holm_adjusted_p_values_are_ordered_bounded_and_not_smaller(p_values):
    adjusted = metrics.holm(p_values)
    p = np.asarray(p_values)
    assert (adjusted >= p - 1e-15).all() and (adjusted <= 1).all()
    order = np.argsort(p, kind="stable")
    assert (np.diff(adjusted[order]) >= -1e-15).all()
