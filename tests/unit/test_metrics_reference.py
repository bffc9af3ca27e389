"""evaluation/metrics.py against references that are not our code: R's pROC 1.18.0 and base R 4.2.2
(tests/reference/proc_reference.csv, made by proc_reference.R), Hanley & McNeil (1982) Table 1, and
Newcombe's (1998) Wilson intervals; also the Wilcoxon test of evaluation/sites.py against R's wilcox.test."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation import metrics

REFERENCE = Path(__file__).parents[1] / "reference"
R_VALUES = pd.read_csv(REFERENCE / "proc_reference.csv")
DATA = {name: pd.read_csv(REFERENCE / f"proc_{name}.csv") for name in ("asah", "hanley", "seeded")}
SINGLE = [("asah", "s100b"), ("asah", "ndka"), ("asah", "wfns"), ("hanley", "rating"), ("seeded", "score_a"),
          ("seeded", "score_b")]
PAIRED = [("asah", "s100b", "ndka"), ("asah", "wfns", "s100b"), ("seeded", "score_a", "score_b")]
ATOL = 1e-9  # the issue asks for 1e-6; the agreement is closer than that


def r_value(dataset, score, quantity) -> np.ndarray:
    rows = R_VALUES[(R_VALUES.dataset == dataset) & (R_VALUES.score == score) & (R_VALUES.quantity == quantity)]
    assert len(rows), (dataset, score, quantity)
    return rows.sort_values("k")["value"].to_numpy(dtype=float)


# ---------------------------------------------------------------------------------- Hanley & McNeil 1982
def hanley_table1():
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])  # definitely normal ... definitely abnormal
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    return np.r_[np.zeros(58), np.ones(51)], np.r_[normal, abnormal]


def test_hanley_mcneil_table1_area_and_published_standard_error():
    labels, ratings = hanley_table1()
    result = metrics.delong_auc(labels, ratings)
    assert (result.n_positive, result.n_negative) == (51, 58)
    assert round(result.estimate, 3) == 0.893
    # Their SE of 0.032 comes from eq. 2 with the exponential-model approximations of Q1 and Q2 (0.03249).
    assert round(metrics.hanley_mcneil_se(result.estimate, 51, 58), 3) == 0.032
    # DeLong estimates Q1 and Q2 from the data instead: 0.03072, i.e. 0.031, not the published figure. Both
    # are right for what they are; DeLong is the one our CIs use (and pROC's), the exponential model is an
    # approximation that is conservative here.
    assert round(result.se, 3) == 0.031
    assert result.se == pytest.approx(np.sqrt(r_value("hanley", "rating", "var_delong")[0]), abs=ATOL)


# ------------------------------------------------------------------------------------------------- pROC
@pytest.mark.parametrize("dataset,score", SINGLE)
def test_auc_and_delong_ci_match_proc(dataset, score):
    frame = DATA[dataset]
    result = metrics.delong_auc(frame["label"], frame[score])
    assert result.estimate == pytest.approx(r_value(dataset, score, "auc")[0], abs=ATOL)
    assert metrics.auc(frame["label"], frame[score]) == pytest.approx(result.estimate, abs=1e-12)
    assert result.se ** 2 == pytest.approx(r_value(dataset, score, "var_delong")[0], abs=ATOL)
    assert result.ci_low == pytest.approx(r_value(dataset, score, "ci95_low")[0], abs=ATOL)
    assert result.ci_high == pytest.approx(r_value(dataset, score, "ci95_high")[0], abs=ATOL)
    ninety = metrics.delong_auc(frame["label"], frame[score], level=0.90)
    assert ninety.ci_low == pytest.approx(r_value(dataset, score, "ci90_low")[0], abs=ATOL)
    assert ninety.ci_high == pytest.approx(r_value(dataset, score, "ci90_high")[0], abs=ATOL)


@pytest.mark.parametrize("dataset,score_a,score_b", PAIRED)
def test_paired_delong_test_matches_proc_roc_test(dataset, score_a, score_b):
    frame = DATA[dataset]
    result = metrics.delong_test(frame["label"], frame[score_a], frame[score_b])
    key = f"{score_a}|{score_b}"
    # pROC's roc.test(a, b) reports a - b; ours is the gain b - a
    assert result.z == pytest.approx(-r_value(dataset, key, "z")[0], abs=ATOL)
    assert result.p_value == pytest.approx(r_value(dataset, key, "p")[0], abs=ATOL)
    assert result.ci_low == pytest.approx(-r_value(dataset, key, "diff_high")[0], abs=ATOL)
    assert result.ci_high == pytest.approx(-r_value(dataset, key, "diff_low")[0], abs=ATOL)
    assert result.auc_a == pytest.approx(r_value(dataset, score_a, "auc")[0], abs=ATOL)
    assert result.estimate == pytest.approx(result.auc_b - result.auc_a, abs=1e-12)
    # symmetry
    swapped = metrics.delong_test(frame["label"], frame[score_b], frame[score_a])
    assert swapped.estimate == pytest.approx(-result.estimate) and swapped.p_value == pytest.approx(result.p_value)


@pytest.mark.parametrize("dataset,score", SINGLE)
def test_youden_threshold_is_one_of_procs_best_points(dataset, score):
    frame = DATA[dataset]
    chosen = metrics.choose_threshold(frame["label"], frame[score], "youden")
    thresholds = r_value(dataset, score, "youden_threshold")
    sensitivities = r_value(dataset, score, "youden_sensitivity")
    specificities = r_value(dataset, score, "youden_specificity")
    best = np.argmax(sensitivities)  # pROC lists every tie; ours breaks ties toward sensitivity
    assert chosen.value == pytest.approx(thresholds[best], abs=ATOL)
    assert chosen.sensitivity == pytest.approx(sensitivities[best], abs=ATOL)
    assert chosen.specificity == pytest.approx(specificities[best], abs=ATOL)
    applied = metrics.diagnostic_metrics(frame["label"], frame[score], chosen)
    assert applied.sensitivity.estimate == pytest.approx(chosen.sensitivity)
    assert applied.specificity.estimate == pytest.approx(chosen.specificity)


# -------------------------------------------------------------------------------------- Wilson and Holm
@pytest.mark.parametrize("successes,total,published", [
    (81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)), (0, 20, (0.0, 0.1611)), (1, 29, (0.0061, 0.1718)),
    (29, 29, (0.8830, 1.0))])
def test_wilson_interval_matches_newcombe_and_r_prop_test(successes, total, published):
    result = metrics.wilson_interval(successes, total)
    assert (round(result.ci_low, 4), round(result.ci_high, 4)) == published  # Newcombe 1998, Table I
    expected = r_value("wilson", f"{successes}/{total}", "ci95")
    assert (result.ci_low, result.ci_high) == pytest.approx(tuple(expected), abs=ATOL)


def test_holm_matches_r_p_adjust():
    p_values = r_value("holm", "p", "input")
    np.testing.assert_allclose(metrics.holm(p_values), r_value("holm", "p", "adjusted"), atol=1e-12)
    with_blank = metrics.holm(np.r_[p_values, np.nan])
    assert np.isnan(with_blank[-1]) and np.allclose(with_blank[:-1], r_value("holm", "p", "adjusted"))


def test_wilcoxon_signed_rank_matches_r_wilcox_test():
    from evaluation.sites import wilcoxon_p

    differences = r_value("wilcoxon", "differences", "input")
    assert wilcoxon_p(differences) == pytest.approx(r_value("wilcoxon", "differences", "p_exact")[0], abs=1e-12)


# ----------------------------------------------------------------------------------------- rerun R (opt-in)
@pytest.mark.rref
def test_proc_reference_script_reproduces_committed_values(tmp_path):
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript not installed (Debian r-base-core r-cran-proc)")
    subprocess.run(["Rscript", str(REFERENCE / "proc_reference.R"), str(tmp_path)], check=True,
                   capture_output=True, text=True)
    for name in ("asah", "hanley", "seeded"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / f"proc_{name}.csv"), DATA[name])
    rerun = pd.read_csv(tmp_path / "proc_reference.csv")
    pd.testing.assert_frame_equal(rerun.drop(columns="value"), R_VALUES.drop(columns="value"))
    np.testing.assert_allclose(rerun["value"], R_VALUES["value"], rtol=0, atol=1e-12)
