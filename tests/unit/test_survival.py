"""Properties of evaluation/survival.py on synthetic cohorts with a planted hazard ratio."""

import numpy as np
import pandas as pd
import pytest

from evaluation.survival import GROUPS, SurvivalAnalysis, format_p
from synthscan.errors import BadInputError


def planted_cohort(rng, n=600, hazard_ratio=2.0, age_log_hr=0.0, baseline_per_day=1 / 700):
    """Exponential survival with hazard ``baseline * hazard_ratio**abnormal``, uniform censoring (~30%)."""
    abnormal = (rng.random(n) < 0.4).astype(int)
    age_years = rng.normal(65, 10, n)
    site = rng.choice(["north", "south", "east"], n)
    hazard = baseline_per_day * hazard_ratio ** abnormal * np.exp(age_log_hr * (age_years - 65))
    event_time = rng.exponential(1 / hazard)
    censor_time = rng.uniform(100, 2000, n)
    return pd.DataFrame({"time_days": np.minimum(event_time, censor_time),
                         "event": (event_time <= censor_time).astype(int), "predicted_abnormal": abnormal,
                         "age_years": age_years, "site": site})


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(20261123)
    cohort = planted_cohort(rng, age_log_hr=np.log(1.03))
    return cohort, SurvivalAnalysis().fit(cohort)


def test_planted_hazard_ratio_is_recovered(planted):
    cohort, analysis = planted
    assert 0.5 < cohort["event"].mean() < 0.85  # censoring present, but most studies have events
    for model in (analysis.cox_univariable_, analysis.cox_adjusted_):
        hr = model["predicted_abnormal"]
        assert hr.ci_low < 2.0 < hr.ci_high
        assert hr.ci_high / hr.ci_low < 1.6  # precise enough that covering 2 means something
        assert hr.p_value < 1e-6
    age = analysis.cox_adjusted_["age_years"]
    assert age.ci_low < 1.03 < age.ci_high
    assert analysis.logrank_.p_value < 1e-6
    assert analysis.logrank_.observed[1] > analysis.logrank_.expected[1]
    assert analysis.adjusted_for_ == ("age_years", "site")
    assert {hr.term for hr in analysis.cox_adjusted_.hazard_ratios} == {
        "predicted_abnormal", "age_years", "site=north", "site=south"}  # "east" is the reference
    assert analysis.reference_site_ == "east"
    # exponential hazards are proportional by construction: the check should not alarm
    assert analysis.cox_univariable_.ph_test.p_value > 0.01


def test_no_effect_gives_hazard_ratio_near_one():
    cohort = planted_cohort(np.random.default_rng(7), hazard_ratio=1.0)
    hr = SurvivalAnalysis(adjust_for=()).fit(cohort).cox_univariable_["predicted_abnormal"]
    assert hr.ci_low < 1.0 < hr.ci_high


def test_hazard_ratio_increases_with_the_planted_one():
    estimates = []
    for planted_hr in (0.5, 1.0, 2.0, 4.0):
        cohort = planted_cohort(np.random.default_rng(11), n=300, hazard_ratio=planted_hr)  # same draws each time
        estimates.append(SurvivalAnalysis(adjust_for=()).fit(cohort).cox_univariable_["predicted_abnormal"].estimate)
    assert np.all(np.diff(estimates) > 0), estimates


def test_kaplan_meier_curves_are_monotone_and_inside_their_cis(planted):
    _, analysis = planted
    for curve in analysis.km_.values():
        assert curve.survival[0] == 1.0 and np.all(np.diff(curve.survival) <= 0)
        assert np.all(np.diff(curve.n_at_risk) <= 0) and curve.n_at_risk[0] == curve.n
        inside = ~np.isnan(curve.ci_low)
        assert np.all(curve.ci_low[inside] <= curve.survival[inside] + 1e-12)
        assert np.all(curve.survival[inside] <= curve.ci_high[inside] + 1e-12)
        assert np.all((curve.ci_low[inside] >= 0) & (curve.ci_high[inside] <= 1))
        median = curve.median_days
        assert median.ci_low <= median.estimate <= median.ci_high


def test_kaplan_meier_without_censoring_is_the_empirical_survival():
    times = np.array([5.0, 8, 8, 12, 20, 31, 40, 41, 50, 60])
    cohort = pd.DataFrame({"time_days": np.tile(times, 2), "event": 1, "predicted_abnormal": np.repeat([0, 1], 10)})
    curve = SurvivalAnalysis(adjust_for=()).fit(cohort).km_[GROUPS[0]]
    for t in (0, 5, 7.9, 8, 30, 60):
        estimate, at_risk = curve.at(t)
        assert estimate.estimate == pytest.approx(np.mean(times > t))
        assert at_risk == np.sum(times >= t)
    assert curve.median_days.estimate == 20  # first time the curve reaches 0.5
    assert np.isnan(curve.at(61)[0].estimate)


def test_swapping_groups_inverts_the_hazard_ratio(planted):
    cohort, analysis = planted
    swapped = SurvivalAnalysis().fit(cohort.assign(predicted_abnormal=1 - cohort["predicted_abnormal"]))
    hr, inverse = analysis.cox_univariable_["predicted_abnormal"], swapped.cox_univariable_["predicted_abnormal"]
    assert inverse.estimate == pytest.approx(1 / hr.estimate, rel=1e-6)
    assert (inverse.ci_low, inverse.ci_high) == pytest.approx((1 / hr.ci_high, 1 / hr.ci_low), rel=1e-6)
    assert inverse.p_value == pytest.approx(hr.p_value, rel=1e-4)
    assert swapped.logrank_.statistic == pytest.approx(analysis.logrank_.statistic, rel=1e-9)


def test_time_units_and_row_order_do_not_matter(planted):
    cohort, analysis = planted
    shuffled = cohort.sample(frac=1, random_state=3).assign(time_days=cohort["time_days"] * 7)
    other = SurvivalAnalysis().fit(shuffled)
    for model, reference in ((other.cox_univariable_, analysis.cox_univariable_),
                             (other.cox_adjusted_, analysis.cox_adjusted_)):
        np.testing.assert_allclose([hr.coef for hr in model.hazard_ratios],
                                   [hr.coef for hr in reference.hazard_ratios], rtol=1e-6, atol=1e-9)
    assert other.logrank_.p_value == pytest.approx(analysis.logrank_.p_value, rel=1e-9)


def test_missing_or_constant_covariates_are_left_out_with_a_note(planted):
    cohort, _ = planted
    analysis = SurvivalAnalysis().fit(cohort.drop(columns="age_years").assign(site="only"))
    assert analysis.cox_adjusted_ is None and analysis.adjusted_for_ == ()
    assert any("age_years" in note for note in analysis.notes_)
    assert any("one site" in note for note in analysis.notes_)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.assign(predicted_abnormal=0), "no study is predicted abnormal"),
    (lambda c: c.assign(event=np.where(c["predicted_abnormal"] == 1, 0, c["event"])), "no events among"),
    (lambda c: c.assign(event=2), "must be 0/1"),
    (lambda c: c.assign(time_days=-c["time_days"]), "negative"),
    (lambda c: c.assign(age_years=c["age_years"].where(c.index > 0)), "lack a value"),
])
def test_bad_cohorts_are_refused(planted, change, message):
    cohort, _ = planted
    with pytest.raises(BadInputError, match=message):
        SurvivalAnalysis().fit(change(cohort))


def test_results_are_frozen_and_summarize(planted):
    _, analysis = planted
    hr = analysis.cox_univariable_["predicted_abnormal"]
    with pytest.raises(AttributeError):
        hr.estimate = 1.0
    assert hr.summary().startswith("predicted_abnormal: HR ")
    text = analysis.summary()
    assert "log-rank" in text and "Cox adjusted" in text and "PH test" in text


def test_format_p():
    assert [format_p(p) for p in (0.5, 0.0499, 0.00123, 0.00012, 3e-5, float("nan"))] == [
        "0.5", "0.05", "0.001", "0.00012", "<0.0001", "n/a"]


def test_km_figure_is_written(planted, tmp_path):
    from PIL import Image

    _, analysis = planted
    analysis.plot_km(tmp_path / "km.png")
    image = Image.open(tmp_path / "km.png")
    assert image.format == "PNG" and image.width > 800 and image.height > 600
