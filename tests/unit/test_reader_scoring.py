"""Reader-study statistics: golden values from published worked examples, agreement with statsmodels,
scikit-learn and scipy, and properties of the clustered bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reader_study.scoring import (ReadMatrix, bootstrap_weights, category_table, cohen_kappa, fleiss_kappa,
                                  fleiss_se_null, min_fleiss_kappa, score, wilson_interval)

# Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters, 5 categories; kappa = 0.210.
WIKIPEDIA = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])

# Fleiss (1971), Table 1: 30 patients, 6 psychiatrists each, 5 diagnoses (depression, personality disorder,
# schizophrenia, neurosis, other). Published kappa 0.430; R irr::kappam.fleiss reports z = 17.652 with the
# Fleiss-Nee-Landis null SE.
FLEISS_1971 = np.array([
    [0, 0, 0, 6, 0], [0, 3, 0, 0, 3], [0, 1, 4, 0, 1], [0, 0, 0, 0, 6], [0, 3, 0, 3, 0], [2, 0, 4, 0, 0],
    [0, 0, 4, 0, 2], [2, 0, 3, 1, 0], [2, 0, 0, 4, 0], [0, 0, 0, 0, 6], [1, 0, 0, 5, 0], [1, 1, 0, 4, 0],
    [0, 3, 3, 0, 0], [1, 0, 0, 5, 0], [0, 2, 0, 3, 1], [0, 0, 5, 0, 1], [3, 0, 0, 1, 2], [5, 1, 0, 0, 0],
    [0, 2, 0, 4, 0], [1, 0, 2, 0, 3], [0, 0, 0, 0, 6], [0, 1, 0, 5, 0], [0, 2, 0, 1, 3], [2, 0, 0, 4, 0],
    [1, 0, 0, 4, 1], [0, 5, 0, 1, 0], [4, 0, 0, 0, 2], [0, 2, 0, 4, 0], [1, 0, 5, 0, 0], [0, 0, 0, 0, 6]])


def test_fleiss_kappa_wikipedia_worked_example():
    assert round(fleiss_kappa(WIKIPEDIA), 3) == 0.210


def test_fleiss_kappa_fleiss_1971_and_irr_z():
    kappa = fleiss_kappa(FLEISS_1971)
    assert round(kappa, 3) == 0.430
    assert round(kappa / fleiss_se_null(FLEISS_1971), 1) == 17.7   # irr: z = 17.652


def test_fleiss_kappa_is_statsmodels():
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_kappa

    for table in (WIKIPEDIA, FLEISS_1971):
        assert fleiss_kappa(table) == pytest.approx(statsmodels_kappa(table, method="fleiss"), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 7), st.integers(2, 30), st.integers(2, 4), st.integers(0, 2 ** 31))
def test_fleiss_kappa_matches_statsmodels_on_random_ratings(n_raters, n_subjects, n_categories, seed):
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_kappa

    ratings = np.random.default_rng(seed).integers(0, n_categories, (n_raters, n_subjects))
    table = category_table(ratings, n_categories)
    with np.errstate(invalid="ignore", divide="ignore"):   # statsmodels divides by zero when undefined
        ours, theirs = fleiss_kappa(table), statsmodels_kappa(table, method="fleiss")
    if math.isnan(ours):
        assert table.sum(axis=0).max() == table.sum()   # one category used throughout: undefined
    else:
        assert ours == pytest.approx(theirs, abs=1e-10)
        assert ours <= 1 + 1e-12


def test_fleiss_kappa_is_invariant_to_subject_and_category_order(rng):
    table = category_table(rng.integers(0, 3, (5, 40)), 3)
    assert fleiss_kappa(table[rng.permutation(40)][:, [2, 0, 1]]) == pytest.approx(fleiss_kappa(table))


def test_perfect_agreement_gives_kappa_one():
    ratings = np.tile(np.array([0, 1, 1, 0, 1]), (4, 1))
    assert fleiss_kappa(category_table(ratings, 2)) == pytest.approx(1.0)
    assert cohen_kappa(ratings[0], ratings[1]) == pytest.approx(1.0)


def test_cohen_kappa_is_scikit_learn_and_symmetric(rng):
    from sklearn.metrics import cohen_kappa_score

    for _ in range(5):
        a, b = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa(b, a))


def test_wilson_interval_newcombe_1998_and_the_paper():
    # Newcombe (1998), Stat Med 17:857, Table II, example (i): 81/263 -> 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    # The paper's 0.48 [0.46-0.51] over 4 x 400 reads is a binomial interval that ignores clustering:
    # 775/1600 = 0.484 gives exactly those rounded figures.
    low, high = wilson_interval(775, 1600)
    assert (round(775 / 1600, 2), round(low, 2), round(high, 2)) == (0.48, 0.46, 0.51)


def test_wilson_interval_is_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for k, n in ((0, 10), (3, 10), (10, 10), (771, 1600)):
        assert wilson_interval(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-10)


def test_bootstrap_weights_keep_strata_sizes(rng):
    strata = np.array([0] * 7 + [1] * 5)
    readers, cases = bootstrap_weights(3, strata, 200, rng)
    assert (readers.sum(axis=1) == 3).all()
    assert (cases[:, :7].sum(axis=1) == 7).all() and (cases[:, 7:].sum(axis=1) == 5).all()


def _tiny_study() -> ReadMatrix:
    """3 readers, 6 cases (3 synthetic); answers chosen by hand."""
    truth = np.array([1, 1, 1, 0, 0, 0], bool)
    called = np.array([[1, 1, 0, 0, 0, 1],     # reader-1: 4/6 correct
                       [1, 0, 0, 0, 1, 1],     # reader-2: 2/6
                       [1, 1, 1, 0, 0, 0]], bool)  # reader-3: 6/6
    condition = np.array([0, 1, 2, 0, 1, 2])
    diagnosis = np.array([[0, 1, 2, 0, 1, 2], [0, 0, 2, 0, 1, 1], [0, 1, 2, 1, 1, 2]])
    grade = np.where(diagnosis == 2, 2, 0)
    quality = np.array([[2, 2, 3, 4, 4, 5], [1, 2, 2, 4, 5, 5], [3, 3, 3, 4, 4, 4]])
    return ReadMatrix(("reader-1", "reader-2", "reader-3"), tuple("abcdef"), truth, condition,
                      np.array([0, 0, 2, 0, 0, 3]), called, diagnosis, grade, quality, np.full((3, 6), 3))


def test_score_on_a_hand_made_study():
    reads = _tiny_study()
    result = score(reads, n_boot=500, seed=1)
    assert [a.successes for a in result.per_reader] == [4, 2, 6]
    assert result.pooled.successes == 12 and result.pooled.n == 18
    assert result.disagreements == 4           # cases b, c, e, f
    assert result.fleiss.estimate == pytest.approx(fleiss_kappa(category_table(reads.judged_synthetic.astype(int),
                                                                               2)))
    assert {(k.reader_a, k.reader_b) for k in result.cohen} == {("reader-1", "reader-2"), ("reader-1", "reader-3"),
                                                                ("reader-2", "reader-3")}
    assert result.diagnosis_synthetic.successes == 8 and result.diagnosis_real.successes == 7
    assert result.confusion_synthetic[1] == (1, 2, 0)   # truth metastasis: one called normal
    assert result.grade_real.n == 2 and result.grade_real.successes == 0   # truth grade 3, called 2
    assert result.grade_synthetic.n == 3 and result.grade_synthetic.successes == 3
    assert result.quality_counts_real == (0, 0, 0, 6, 3)
    assert result.quality.estimate == pytest.approx(np.mean([2, 2, 3, 1, 2, 2, 3, 3, 3]) - 39 / 9)
    for accuracy in (result.pooled, *result.per_reader):
        assert accuracy.ci_low <= accuracy.estimate <= accuracy.ci_high
    assert "Fleiss' kappa" in result.summary()


def test_mann_whitney_is_scipy():
    from scipy.stats import mannwhitneyu

    reads = _tiny_study()
    result = score(reads, n_boot=200)
    synthetic = reads.quality[:, reads.truth_synthetic].ravel()
    real = reads.quality[:, ~reads.truth_synthetic].ravel()
    expected = mannwhitneyu(synthetic, real, alternative="two-sided")
    assert result.quality.p_value == pytest.approx(expected.pvalue)
    assert result.quality.statistic == expected.statistic


def test_score_is_deterministic_in_its_seed():
    reads = _tiny_study()
    assert score(reads, n_boot=300, seed=5).to_dict() == score(reads, n_boot=300, seed=5).to_dict()


def test_clustered_bootstrap_is_wider_than_wilson_when_cases_are_shared():
    from reader_study.simulate import ReaderModel, simulate_reads

    rng = np.random.default_rng(3)
    truth = np.arange(200) % 2 == 0
    reads = simulate_reads(truth, np.zeros(200, int), np.zeros(200, int), 6, ReaderModel(0.6, 0.6), rng)
    pooled = score(reads, n_boot=1000, seed=0).pooled
    assert (pooled.ci_high - pooled.ci_low) > 1.5 * (pooled.wilson_high - pooled.wilson_low)


def test_all_same_call_leaves_kappa_undefined_not_crashing():
    reads = _tiny_study()
    everyone_real = np.zeros_like(reads.judged_synthetic)
    result = score(ReadMatrix(**{**reads.__dict__, "judged_synthetic": everyone_real}), n_boot=200)
    assert math.isnan(result.fleiss.estimate) and result.disagreements == 0
    assert result.pooled.estimate == 0.5
    assert result.to_dict()["fleiss"]["estimate"] is None   # JSON-safe


def test_one_reader_has_no_kappa():
    reads = _tiny_study()
    single = ReadMatrix(**{**reads.__dict__, **{k: getattr(reads, k)[:1] for k in
                                                ("judged_synthetic", "diagnosis", "grade", "quality", "confidence")},
                           "readers": ("reader-1",)})
    result = score(single, n_boot=200)
    assert result.n_readers == 1 and math.isnan(result.fleiss.estimate) and result.cohen == ()
    assert result.pooled.successes == 4


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.integers(3, 40), st.floats(0.05, 0.95), st.integers(0, 2 ** 31))
def test_min_fleiss_kappa_is_a_lower_bound_and_is_attained(n_readers, n_cases, p_call, seed):
    rng = np.random.default_rng(seed)
    calls = (rng.random((n_readers, n_cases)) < p_call).astype(int)
    table = category_table(calls, 2)
    unanimous = int((table.max(axis=1) == n_readers).sum())
    called = table[:, 1].sum() / table.sum()
    if 0 < called < 1:
        assert fleiss_kappa(table) >= min_fleiss_kappa(unanimous, n_cases, n_readers, called) - 1e-12
    # Attained when every non-unanimous case is an even split: two mirrored even splits, balanced calls.
    half = n_readers // 2
    case = np.array([1] * half + [0] * (n_readers - half))
    table = category_table(np.stack([case, 1 - case], axis=1), 2)
    assert fleiss_kappa(table) == pytest.approx(min_fleiss_kappa(0, 2, n_readers, 0.5))
