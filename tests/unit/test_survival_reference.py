"""evaluation/survival.py against R's survival package (tests/reference/survival_reference.json, made by
survival_reference.R with R 4.2.2 / survival 3.5-3) and against the published rossi coefficients."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.survival import GROUPS, SurvivalAnalysis, fit_cox

REFERENCE = Path(__file__).parents[1] / "reference"
R_REFERENCE = json.loads((REFERENCE / "survival_reference.json").read_text())
R_TERMS = {"abnormal": "predicted_abnormal", "sitesite-b": "site=site-b", "sitesite-c": "site=site-c"}


@pytest.fixture(scope="module")
def rossi():
    frame = pd.read_csv(REFERENCE / "survival_rossi.csv")
    return frame.rename(columns={"week": "time_days", "arrest": "event"})


@pytest.fixture(scope="module")
def cohort_analysis():
    cohort = pd.read_csv(REFERENCE / "survival_cohort.csv").rename(columns={"abnormal": "predicted_abnormal"})
    return SurvivalAnalysis().fit(cohort)


def assert_cox_matches(model, reference, atol=1e-6):
    terms = [R_TERMS.get(t, t) for t in reference["terms"]]
    assert [hr.term for hr in model.hazard_ratios] == terms
    for key, attribute in (("coef", "coef"), ("se", "se"), ("p", "p_value"), ("hr", "estimate"),
                           ("hr_low", "ci_low"), ("hr_high", "ci_high")):
        ours = [getattr(model[term], attribute) for term in terms]
        np.testing.assert_allclose(ours, reference[key], rtol=1e-6, atol=atol, err_msg=key)
    assert model.log_likelihood == pytest.approx(reference["loglik"], abs=1e-6)
    assert reference["ties"] == "efron"


def test_rossi_published_coefficients(rossi):
    # Fox & Weisberg's appendix and the lifelines docs: the full model fin + age + race + wexp + mar + paro + prio
    # (the three-covariate model fin + age + prio gives -0.3470, -0.0671, 0.0969 instead)
    model = fit_cox(rossi, ["fin", "age", "race", "wexp", "mar", "paro", "prio"], "full")
    assert model["fin"].coef == pytest.approx(-0.3794, abs=1e-4)
    assert model["age"].coef == pytest.approx(-0.0574, abs=1e-4)
    assert model["prio"].coef == pytest.approx(0.0915, abs=1e-4)


def test_rossi_cox_matches_r(rossi):
    assert_cox_matches(fit_cox(rossi, ["fin", "age", "prio"], "r"), R_REFERENCE["rossi"]["cox"])
    full = fit_cox(rossi, ["fin", "age", "race", "wexp", "mar", "paro", "prio"], "r")
    assert_cox_matches(full, R_REFERENCE["rossi"]["cox_full"])
    # rossi has many tied weeks: Breslow's approximation would be visibly off, so agreement pins Efron ties
    breslow = R_REFERENCE["rossi"]["cox_full_breslow"]
    assert breslow["ties"] == "breslow"
    assert max(abs(full[t].coef - c) for t, c in zip(breslow["terms"], breslow["coef"])) > 1e-3


def test_rossi_logrank_and_kaplan_meier_match_r(rossi):
    analysis = SurvivalAnalysis(adjust_for=()).fit(rossi.assign(predicted_abnormal=rossi["fin"]))
    reference = R_REFERENCE["rossi"]["logrank_fin"]
    assert analysis.logrank_.statistic == pytest.approx(reference["chisq"], rel=1e-9)
    assert analysis.logrank_.p_value == pytest.approx(reference["p"], rel=1e-9)
    np.testing.assert_allclose(analysis.logrank_.expected, reference["expected"], rtol=1e-9)
    assert_km_matches(analysis, R_REFERENCE["rossi"]["km_fin"])


def assert_km_matches(analysis, reference):
    for group, name in zip(("0", "1"), GROUPS):
        curve, expected = analysis.km_[name], reference["groups"][group]
        at = [curve.at(t) for t in expected["time"]]
        np.testing.assert_allclose([e.estimate for e, _ in at], expected["survival"], rtol=1e-9)
        np.testing.assert_allclose([e.ci_low for e, _ in at], expected["ci_low"], rtol=1e-9)
        np.testing.assert_allclose([e.ci_high for e, _ in at], expected["ci_high"], rtol=1e-9)
        assert [n for _, n in at] == expected["at_risk"]
        median = reference["median"][group]
        ours = [curve.median_days.estimate, curve.median_days.ci_low, curve.median_days.ci_high]
        assert [np.inf if m is None else m for m in median.values()] == ours  # None: not reached


@pytest.mark.parametrize("transform_key", ["zph_approx_km"])
def test_rossi_ph_test_matches_r_approximation(rossi, transform_key):
    model = fit_cox(rossi, ["fin", "age", "prio"], "r")
    reference = R_REFERENCE["rossi"][transform_key]
    np.testing.assert_allclose(model.ph_test.statistics, reference["chisq"], rtol=1e-6)
    np.testing.assert_allclose(model.ph_test.p_values, reference["p"], rtol=1e-6)
    assert model.ph_test.global_statistic == pytest.approx(reference["global_chisq"], rel=1e-6)
    assert model.ph_test.global_df == reference["global_df"]
    # survival >= 3.0's exact score test gives other numbers but the same verdicts (age only, at 0.05)
    exact = R_REFERENCE["rossi"]["zph_km"]
    assert ([p < 0.05 for p in model.ph_test.p_values] == [p < 0.05 for p in exact["p"][:-1]] == [False, True, False])
    assert model.ph_test.global_statistic == pytest.approx(exact["chisq"][-1], rel=0.01)


def test_cohort_matches_r(cohort_analysis):
    reference = R_REFERENCE["cohort"]
    assert_cox_matches(cohort_analysis.cox_univariable_, reference["cox_univariable"])
    assert_cox_matches(cohort_analysis.cox_adjusted_, reference["cox_adjusted"])
    assert cohort_analysis.logrank_.statistic == pytest.approx(reference["logrank"]["chisq"], rel=1e-9)
    assert cohort_analysis.logrank_.p_value == pytest.approx(reference["logrank"]["p"], rel=1e-9)
    np.testing.assert_allclose(cohort_analysis.logrank_.observed, reference["logrank"]["observed"])
    np.testing.assert_allclose(cohort_analysis.logrank_.expected, reference["logrank"]["expected"], rtol=1e-9)
    assert_km_matches(cohort_analysis, reference["km"])
    for model, key in ((cohort_analysis.cox_univariable_, "zph_approx_km_univariable"),
                       (cohort_analysis.cox_adjusted_, "zph_approx_km_adjusted")):
        np.testing.assert_allclose(model.ph_test.statistics, reference[key]["chisq"], rtol=1e-5)
        assert model.ph_test.global_statistic == pytest.approx(reference[key]["global_chisq"], rel=1e-5)


def _numbers(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _numbers(value, f"{prefix}/{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _numbers(value, f"{prefix}/{i}")
    else:
        yield prefix, tree


@pytest.mark.rref
def test_r_script_reproduces_committed_output(tmp_path):
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript not installed (apt-get install r-base-core r-cran-survival)")
    out = tmp_path / "survival_reference.json"
    subprocess.run(["Rscript", str(REFERENCE / "survival_reference.R"), str(out)], check=True, timeout=120)
    fresh, committed = dict(_numbers(json.loads(out.read_text()))), dict(_numbers(R_REFERENCE))
    assert fresh.keys() == committed.keys()
    for key, value in committed.items():
        if isinstance(value, float) and key not in ("/r_version", "/survival_version"):
            assert fresh[key] == pytest.approx(value, rel=1e-7, abs=1e-12), key
