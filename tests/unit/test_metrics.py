"""evaluation/metrics.py: worked examples, input errors, bootstrap, thresholds, calibration, kappa, subgroups."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from evaluation import metrics
from evaluation.bootstrap import bootstrap_aucs
from synthscan.errors import BadInputError


@pytest.fixture
def cohort(rng):
    """1,000 cases, 30% positive, a moderately good continuous score and a coarser rounded copy (ties)."""
    labels = (rng.random(1000) < 0.3).astype(int)
    scores = rng.normal(size=1000) + 1.2 * labels
    return labels, scores, np.round(scores, 1)


# -------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [1, 1, 1]])
@pytest.mark.parametrize("function", [metrics.auc, metrics.delong_auc, metrics.bootstrap_auc, metrics.roc_points])
def test_single_class_says_auc_is_undefined(labels, function):
    with pytest.raises(BadInputError, match="undefined: test set has only one class"):
        function(labels, np.arange(len(labels), dtype=float))


def test_single_class_in_paired_test_and_summaries_never_show_nan():
    with pytest.raises(BadInputError, match="AUC undefined"):
        metrics.delong_test([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    result = metrics.diagnostic_metrics([1, 1, 1], [0.1, 0.6, 0.9], 0.5)
    text = result.summary()
    assert "nan" not in text.lower() and "undefined (0 of 0)" in text  # specificity has no negatives


@pytest.mark.parametrize("labels,scores,message", [
    ([0, 1, 2], [0.1, 0.2, 0.3], "labels must be 0 or 1"),
    ([0, 1, np.nan], [0.1, 0.2, 0.3], "labels must be 0 or 1"),
    ([0, 1, 1], [0.1, np.nan, 0.3], "scores must be finite"),
    ([0, 1, 1], [0.1, 0.2], "3 labels but 2 scores"),
    (["no", "yes"], [0.1, 0.2], "labels must be numbers"),
    ([0, 1], ["low", "high"], "scores must be numbers"),
    ([0, 1, 0, 1], [[1, 2, 3, 4], [2, 3, 4, 5]], "one vector"),
])
def test_bad_labels_and_scores(labels, scores, message):
    with pytest.raises(BadInputError, match=message):
        metrics.delong_auc(labels, scores)


def test_delong_needs_two_cases_per_class_but_the_auc_is_defined():
    assert metrics.auc([0, 0, 1], [0.1, 0.5, 0.4]) == 0.5
    with pytest.raises(BadInputError, match="at least 2 positive and 2 negative"):
        metrics.delong_auc([0, 0, 1], [0.1, 0.5, 0.4])


def test_unknown_method_and_level():
    with pytest.raises(BadInputError, match="unknown AUC CI method"):
        metrics.auc_ci([0, 1, 0, 1], [1, 2, 3, 4], method="wald")
    with pytest.raises(BadInputError, match="confidence level"):
        metrics.delong_auc([0, 1, 0, 1], [1, 2, 3, 4], level=95)


# ------------------------------------------------------------------------------------------------- AUC
def test_auc_matches_sklearn_with_ties(cohort):
    labels, scores, rounded = cohort
    assert metrics.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert metrics.auc(labels, rounded) == pytest.approx(roc_auc_score(labels, rounded), abs=1e-12)


def test_summary_reads_like_a_paper(cohort):
    labels, scores, _ = cohort
    text = metrics.delong_auc(labels, scores).summary()
    assert text.startswith("AUC 0.") and "95% CI" in text and "delong" in text and "positive" in text


def test_bootstrap_resample_is_the_auc_of_that_resample():
    # Replays the generator: the first block draws the negatives (sorted by score), then the positives.
    rng = np.random.default_rng(5)
    labels = (rng.random(60) < 0.4).astype(int)
    scores = np.round(rng.normal(size=60) + labels, 1)
    resampled = bootstrap_aucs(labels == 1, scores, 1, np.random.default_rng(9))
    replay = np.random.default_rng(9)
    negatives, positives = np.sort(scores[labels == 0]), scores[labels == 1]
    drawn_negatives = negatives[replay.integers(0, len(negatives), size=(1, len(negatives)))[0]]
    drawn_positives = positives[replay.integers(0, len(positives), size=(1, len(positives)))[0]]
    expected = roc_auc_score(np.r_[np.zeros(len(negatives)), np.ones(len(positives))],
                             np.r_[drawn_negatives, drawn_positives])
    assert resampled[0] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_agrees_with_delong_and_is_seeded(cohort):
    labels, scores, rounded = cohort
    for values in (scores, rounded):
        delong = metrics.delong_auc(labels, values)
        boot = metrics.bootstrap_auc(labels, values, n_resamples=2000, seed=3)
        assert boot.estimate == pytest.approx(delong.estimate, abs=1e-12)
        assert boot.se == pytest.approx(delong.se, rel=0.1)
        assert boot.ci_low == pytest.approx(delong.ci_low, abs=0.01)
        assert boot.ci_high == pytest.approx(delong.ci_high, abs=0.01)
        assert boot.method == "bootstrap"
    assert metrics.bootstrap_auc(labels, scores, 200, seed=3) == metrics.bootstrap_auc(labels, scores, 200, seed=3)
    assert metrics.bootstrap_auc(labels, scores, 200, seed=3) != metrics.bootstrap_auc(labels, scores, 200, seed=4)
    generator = np.random.default_rng(3)
    assert metrics.bootstrap_auc(labels, scores, 200, seed=generator).ci_low == \
        metrics.bootstrap_auc(labels, scores, 200, seed=3).ci_low


def test_delong_test_detects_a_better_score_and_not_a_copy(cohort, rng):
    labels, scores, _ = cohort
    noisy = scores + rng.normal(scale=1.5, size=len(scores))
    better = metrics.delong_test(labels, noisy, scores)
    assert better.estimate > 0.05 and better.p_value < 1e-4 and better.ci_low > 0
    assert "p < 0.0001" in better.summary()
    assert [metrics.p_text(p) for p in (0.0123456, 3e-5)] == ["p = 0.0123", "p < 0.0001"]
    same = metrics.delong_test(labels, scores, scores)
    assert same.estimate == 0 and same.p_value == 1.0


def test_delong_test_needs_scores_on_the_same_cases():
    with pytest.raises(BadInputError, match="same cases"):
        metrics.delong_test([0, 1, 0, 1], [1, 2, 3, 4], [1, 2, 3])


# ---------------------------------------------------------------------------------- thresholds and 2x2
def test_threshold_is_fixed_on_validation_and_applied_unchanged():
    validation_labels = [0, 0, 0, 1, 0, 1, 1, 1]
    validation_scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    youden = metrics.choose_threshold(validation_labels, validation_scores)
    # J = 0.75 at 0.35 (sens 1, spec 0.75) and at 0.55 (sens 0.75, spec 1): the tie goes to sensitivity
    assert youden.value == pytest.approx(0.35) and youden.sensitivity == 1.0 and youden.specificity == 0.75
    strict = metrics.choose_threshold(validation_labels, validation_scores, "sensitivity", 0.7)
    assert strict.value == pytest.approx(0.55) and strict.specificity == 1.0 and strict.rule == "sensitivity>=0.7"
    test = metrics.diagnostic_metrics([1, 1, 0, 0, 1], [0.35, 0.9, 0.34, 0.36, 0.2], youden)
    assert (test.true_positive, test.false_negative, test.true_negative, test.false_positive) == (2, 1, 1, 1)
    assert test.ppv.estimate == pytest.approx(2 / 3) and test.npv.estimate == pytest.approx(0.5)
    assert test.sensitivity.ci_low < 2 / 3 < test.sensitivity.ci_high
    with pytest.raises(BadInputError, match="target_sensitivity"):
        metrics.choose_threshold(validation_labels, validation_scores, "sensitivity")


def test_roc_points_run_from_all_positive_to_all_negative(cohort):
    labels, _, rounded = cohort
    points = metrics.roc_points(labels, rounded)
    assert points["sensitivity"].iloc[0] == 1 and points["specificity"].iloc[0] == 0
    assert points["sensitivity"].iloc[-1] == 0 and points["specificity"].iloc[-1] == 1
    assert points["sensitivity"].is_monotonic_decreasing and points["specificity"].is_monotonic_increasing
    # trapezoidal area of these points is the Mann-Whitney AUC
    area = np.trapezoid(points["sensitivity"][::-1], 1 - points["specificity"][::-1])
    assert area == pytest.approx(metrics.auc(labels, rounded), abs=1e-12)


# ------------------------------------------------------------------------------------------ calibration
def test_calibration_brier_bins_and_diagram(rng, tmp_path):
    probabilities = rng.random(4000)
    labels = (rng.random(4000) < probabilities).astype(int)
    result = metrics.calibration(labels, probabilities)
    assert result.estimate == pytest.approx(brier_score_loss(labels, probabilities))
    assert result.ci_low < result.estimate < result.ci_high
    assert result.bins["n"].sum() == 4000 and len(result.bins) == 10
    # calibrated by construction: every bin's Wilson interval covers its mean prediction (well, nearly all)
    covered = (result.bins["observed_low"] <= result.bins["mean_predicted"]) & \
        (result.bins["mean_predicted"] <= result.bins["observed_high"])
    assert covered.sum() >= 9
    overconfident = metrics.calibration(labels, np.clip(probabilities * 2 - 0.5, 0, 1))
    assert overconfident.estimate > result.estimate
    path = metrics.reliability_diagram(result, tmp_path / "reliability.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    quantile = metrics.calibration(labels, probabilities, n_bins=5, strategy="quantile")
    assert len(quantile.bins) == 5 and quantile.bins["n"].min() >= 790
    assert "Brier score" in result.summary()


def test_calibration_refuses_scores_that_are_not_probabilities():
    with pytest.raises(BadInputError, match=r"probabilities in \[0, 1\]"):
        metrics.calibration([0, 1], [-2.0, 3.0])


# ---------------------------------------------------------------------------------------- multi-class
def test_cohen_kappa_worked_example_and_accuracy():
    # The 2x2 worked example of Cohen's kappa (Wikipedia): 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4
    first = np.repeat(["yes", "yes", "no", "no"], [20, 5, 10, 15])
    second = np.repeat(["yes", "no", "yes", "no"], [20, 5, 10, 15])
    kappa = metrics.cohen_kappa(first, second)
    assert kappa.estimate == pytest.approx(0.4)
    assert kappa.ci_low < 0.4 < kappa.ci_high and kappa.n == 50
    correct = metrics.accuracy(first, second)
    assert (correct.successes, correct.total) == (35, 50)


def test_weighted_kappa_for_perugini_grades(rng):
    grades = rng.integers(0, 4, 300)
    predicted = np.clip(grades + rng.integers(-1, 2, 300), 0, 3)
    plain, quadratic = metrics.cohen_kappa(grades, predicted), metrics.cohen_kappa(grades, predicted, "quadratic")
    assert quadratic.estimate > plain.estimate  # near misses count as partial agreement
    assert -1 <= quadratic.ci_low < quadratic.estimate < quadratic.ci_high <= 1
    perfect = metrics.cohen_kappa(grades, grades)
    assert perfect.estimate == 1.0
    with pytest.raises(BadInputError, match="kappa undefined"):
        metrics.cohen_kappa([2, 2], [2, 2])
    with pytest.raises(BadInputError, match="weights"):
        metrics.cohen_kappa(grades, predicted, "cubic")


# ------------------------------------------------------------------------------------------ subgroups
def test_subgroup_aucs_by_column_and_age_band(rng):
    n = 600
    frame = pd.DataFrame({"label": (rng.random(n) < 0.4).astype(int), "sex": rng.choice(["F", "M"], n),
                          "age_years": rng.integers(35, 95, n).astype(float), "tracer": "DPD"})
    frame["score"] = rng.normal(size=n) + frame["label"] * np.where(frame["sex"] == "F", 2.0, 0.2)
    frame.loc[:4, "sex"] = np.nan
    by_sex = metrics.subgroup_aucs(frame, "sex")
    assert list(by_sex["sex"]) == ["all", "F", "M", "unknown"]
    female, male = by_sex.set_index("sex").loc["F", "auc"], by_sex.set_index("sex").loc["M", "auc"]
    assert female > 0.85 and male < 0.7
    assert by_sex["n"].iloc[1:].sum() == n
    bands = metrics.subgroup_aucs(frame, ["tracer", "age_band"])
    assert list(bands["age_band"]) == ["all", "<50", "50-59", "60-69", "70-79", ">=80"]
    one_class = frame.assign(label=np.where(frame["sex"] == "M", 0, frame["label"]))
    table = metrics.subgroup_aucs(one_class, "sex").set_index("sex")
    assert pd.isna(table.loc["M", "auc"]) and "only one class" in table.loc["M", "note"]
    with pytest.raises(BadInputError, match="camera"):
        metrics.subgroup_aucs(frame, "camera")


def test_age_band_edges():
    bands = metrics.age_band(pd.Series([49.9, 50, 59, 80, np.nan]))
    assert list(bands.astype(object).where(bands.notna(), None)) == ["<50", "50-59", "50-59", ">=80", None]
