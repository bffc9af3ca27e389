"""A randomly initialised generator's samples are judged at chance by a competent judge (evaluation/fidelity.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evaluation.fidelity import (JUDGE_CLASSES, JudgeConfig, fit_judge, frechet_distance, judge_class, load_canonical,
                                 precision_recall)
from synthscan.io.manifest import read_manifest
from synthscan.model.tiny import tiny_model, toy_cohort
from synthscan.sample import SampleRequest, sample

JUDGE = JudgeConfig(rows=32, cols=8, width=8, epochs=12, batch_size=8, lr=3e-3, thinning=1.0)  # toy scans: ~7k counts


@pytest.fixture(scope="module")
def judge_and_test(tmp_path_factory):
    train = read_manifest(toy_cohort(tmp_path_factory.mktemp("train"), n=60, seed=1))
    test = read_manifest(toy_cohort(tmp_path_factory.mktemp("test"), n=30, seed=2))
    return fit_judge(train, JUDGE, progress=False), test


def test_random_generator_is_judged_at_chance_while_real_scans_are_not(judge_and_test, tmp_path):
    judge, test = judge_and_test
    real_counts, _ = load_canonical(test, JUDGE.rows, JUDGE.cols, progress=False)
    real_labels = np.array([judge_class(m, g) for m, g in zip(test["metastasis"], test["amyloid_grade"])])
    assert (judge.predict(real_counts) == real_labels).mean() >= 0.9  # the judge can tell the classes apart

    model = tmp_path / "random-model"
    tiny_model(seed=5).save_pretrained(model)
    table = np.zeros((3, 3), int)  # requested condition x judged class
    for c, condition in enumerate(JUDGE_CLASSES):
        grade = 3 if condition == "amyloidosis" else None
        sample(SampleRequest(condition, 20, tmp_path / "synth", grade=grade), model, progress=False)
    frame = read_manifest(tmp_path / "synth" / "manifest.csv")
    counts, _ = load_canonical(frame, JUDGE.rows, JUDGE.cols, progress=False)
    requested = np.array([judge_class(m, g) for m, g in zip(frame["metastasis"], frame["amyloid_grade"])])
    np.add.at(table, (requested, judge.predict(counts)), 1)
    correct = int(np.trace(table))
    # accuracy no better than chance (1/3) ...
    assert stats.binomtest(correct, table.sum(), 1 / 3, alternative="greater").pvalue > 0.01
    # ... and the judged class does not depend on the requested condition
    used = table[:, table.sum(axis=0) > 0]
    if used.shape[1] > 1:
        assert stats.chi2_contingency(used).pvalue > 0.01


def test_frechet_distance_and_precision_recall_properties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    shifted = b + np.array([3.0, 0, 0, 0])
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, b) < 0.3 < 8 < frechet_distance(a, shifted) < 10  # ~ ||shift||^2 = 9
    assert frechet_distance(a, shifted) == pytest.approx(frechet_distance(shifted, a), rel=1e-6)
    precision, recall = precision_recall(a, b)
    assert precision > 0.8 and recall > 0.8
    collapsed = np.repeat(b[:1], 400, axis=0) + rng.normal(scale=0.01, size=(400, 4))
    precision, recall = precision_recall(a, collapsed)
    assert precision > 0.9 and recall < 0.2  # mode collapse: realistic but not diverse


def test_accuracies_carry_wilson_intervals_and_their_difference_newcombes():
    from evaluation.fidelity import _accuracy, _differences
    from evaluation.wilson import wilson_interval

    labels = np.r_[np.zeros(70, int), np.ones(80, int)]
    predicted = labels.copy()
    predicted[56:70] = 1  # normal: 56 of 70 right
    predicted[70:102] = 0  # metastasis: 48 of 80 right
    accuracy = _accuracy(predicted, labels)
    w = wilson_interval(56, 70)
    assert accuracy["normal"] == {"accuracy": 0.8, "correct": 56, "n": 70, "ci_low": w.ci_low, "ci_high": w.ci_high}
    assert accuracy["metastasis"]["correct"] == 48 and accuracy["overall"]["n"] == 150
    assert accuracy["amyloidosis"]["n"] == 0 and np.isnan(accuracy["amyloidosis"]["accuracy"])
    # Newcombe (1998, Stat Med 17:873), example (a): 56/70 - 48/80 = 0.2, method 10 interval 0.0524 to 0.3339
    reference = {"normal": {"accuracy": 0.6, "correct": 48, "n": 80}, "amyloidosis": {"accuracy": 1.0, "correct": 5,
                                                                                      "n": 5}}
    differences = _differences(accuracy, reference)
    assert differences["normal"]["estimate"] == pytest.approx(0.2)
    assert (differences["normal"]["ci_low"], differences["normal"]["ci_high"]) == pytest.approx((0.0524, 0.3339),
                                                                                                abs=5e-5)
    assert set(differences) == {"normal"}  # no reference, or no synthetic scans of the class: no difference


@pytest.mark.parametrize("lesions, superscan, expected", [(1, 0, 1), (5, 0, 1), (6, 0, 2), (20, "0", 2), (21, 0, 3),
                                                          (44, None, 3), (37, 1, 4), ("", 0, None), (None, 1, None),
                                                          (0, 0, None), ("7", "", 2)])
def test_extent_of_disease_follows_soloway(lesions, superscan, expected):
    from evaluation.fidelity import extent_of_disease

    assert extent_of_disease(lesions, superscan) == expected  # Soloway 1988: < 6, 6-20, > 20, superscan


def test_the_judge_is_broken_down_by_extent_on_real_metastatic_scans():
    import pandas as pd

    from evaluation.fidelity import EXTENT_NAMES, FidelityReport, _by_extent

    frame = pd.DataFrame({"lesion_count": [3, 4, 12, 30, 40, "", 0], "superscan": [0, 0, 0, 0, 1, 0, 0]})
    labels = np.array([1, 1, 1, 1, 1, 1, 0])
    predicted = np.array([0, 1, 1, 1, 1, 1, 1])
    table = _by_extent(predicted, labels, frame)
    assert list(table) == list(EXTENT_NAMES)  # the unknown count and the normal scan are left out
    assert (table[EXTENT_NAMES[0]]["correct"], table[EXTENT_NAMES[0]]["n"]) == (1, 2)
    assert [table[name]["n"] for name in EXTENT_NAMES[1:]] == [1, 1, 1]
    assert _by_extent(predicted, labels, frame.drop(columns="superscan"))[EXTENT_NAMES[2]]["n"] == 2
    assert _by_extent(predicted, labels, frame.drop(columns="lesion_count")) == {}
    report = FidelityReport({}, {}, {}, [1.0], [1.0], 2, 0.5, 0.5, {"estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6},
                            [0.5], {}, judge_by_extent=table)
    assert "EOD 1 (1-5 lesions) 0.500 (" in report.summary() and "n=2)" in report.summary()


def test_the_frechet_ratio_is_the_median_over_judge_networks():
    from evaluation.fidelity import FidelityReport

    report = FidelityReport({}, {}, {}, [12.0, 90.0, 20.0], [2.0, 3.0, 4.0], 10, 0.5, 0.5,
                            {"estimate": 0.9, "ci_low": 0.8, "ci_high": 1.0}, [0.8, 0.9, 0.95], {})
    assert report.frechet_ratios == [6.0, 30.0, 5.0] and report.frechet_ratio == 6.0
    assert "median ratio **6.00x**" in report.summary() and "90 vs 3 (30.00x)" in report.summary()


def _hot_spot_scans(rng, n):
    """Flat Poisson scans 2x32x8: class 0 plain, 1 one hot pixel (x4) anywhere, 2 one raised 4x4 patch (x2)."""
    labels = np.arange(n) % 3
    expected = np.full((n, 2, 32, 8), 60.0)
    for i, label in enumerate(labels):
        view, row, col = rng.integers(2), rng.integers(2, 28), rng.integers(2, 6)
        if label == 1:
            expected[i, view, row, col] *= 4
        elif label == 2:
            expected[i, view, row - 2:row + 2, col - 2:col + 2] *= 2
    return rng.poisson(expected).astype(np.float32), labels


def test_the_judge_finds_a_single_hot_pixel_anywhere_in_the_body():
    from evaluation.fidelity import Judge

    rng = np.random.default_rng(0)
    train_counts, train_labels = _hot_spot_scans(rng, 600)
    test_counts, test_labels = _hot_spot_scans(rng, 300)
    judge = Judge(JudgeConfig(rows=32, cols=8, width=8, epochs=15, batch_size=16, lr=3e-3)).fit(
        train_counts, train_labels, progress=False)
    predicted = judge.predict(test_counts)
    assert (predicted[test_labels == 1] == 1).mean() >= 0.9
    assert (predicted == test_labels).mean() >= 0.9
    members = judge.member_features(test_counts)
    assert len(members) == 3 and all(m.shape == (300, 2 * 8 * 8) for m in members)  # mean- and max-pooled last stage
    assert not np.allclose(members[0], members[1])  # networks of different seeds
    assert np.array_equal(judge.features(test_counts), np.concatenate(members, axis=1))
    probabilities = np.mean([judge.networks_[m](judge._inputs(test_counts)).softmax(-1).detach().numpy()
                             for m in range(3)], axis=0)
    assert np.allclose(judge.predict_proba(test_counts), probabilities, atol=1e-6)  # the members' mean


def test_a_judge_of_an_older_format_is_refused_by_name(tmp_path):
    import json

    from evaluation.fidelity import Judge
    from synthscan.errors import BadInputError

    (tmp_path / "config.json").write_text(json.dumps({"format": "synthscan-judge/1", "judge": {}, "network": {}}))
    with pytest.raises(BadInputError, match="older format .synthscan-judge/1.*fit a new one with --train"):
        Judge.load(tmp_path)


def test_count_thinning_is_binomial_and_keeps_fractional_counts():
    import torch

    from synthscan.model.critic import thin_counts

    generator = torch.Generator().manual_seed(0)
    counts = torch.full((20000,), 40.0)
    thinned = thin_counts(counts, torch.full_like(counts, 0.25), generator)
    assert torch.equal(thinned, thinned.round())
    assert float(thinned.mean()) == pytest.approx(10, abs=0.1)
    assert float(thinned.var()) == pytest.approx(40 * 0.25 * 0.75, rel=0.05)
    fractional = thin_counts(torch.full((1000,), 0.4), torch.full((1000,), 0.5), generator)
    assert torch.allclose(fractional, torch.full((1000,), 0.2))  # resampled counts below 1 are scaled, not zeroed


@pytest.mark.parametrize("metastasis, grade, expected", [
    (0, 0, 0), (1, 0, 1), (0, 2, 2), (0, 3, 2), ("1", "0", 1),
    (0, 1, -1), (1, 2, -1), (None, 0, -1), (float("nan"), 0, -1), ("", 0, -1),
])
def test_judge_classes_follow_the_design(metastasis, grade, expected):
    assert judge_class(metastasis, grade) == expected


def test_the_critic_sees_denoiser_classes_as_the_judge_does():
    from synthscan.model.conditions import CLASS_NAMES, judge_class_of

    assert {name: judge_class_of(i) for i, name in enumerate(CLASS_NAMES)} == {
        "null": -1, "normal": 0, "metastasis": 1, "amyloidosis-g1": -1, "amyloidosis-g2": 2, "amyloidosis-g3": 2}
