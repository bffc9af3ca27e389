"""Survival of predicted-abnormal vs predicted-normal studies: Kaplan-Meier, log-rank, Cox, PH check.

Haberl et al. (EJNMMI 2025) report worse outcomes for patients whose scans a classifier calls abnormal
(log-rank p < 0.0001). Given one cohort (studies with ``time_days``, ``event``, a 0/1 ``predicted_abnormal``
and optionally ``age_years`` and ``site``) this module estimates, with the same conventions as R's
``survival`` package (checked in tests/reference/survival_reference.R):

- Kaplan-Meier curves per group (Kaplan & Meier 1958), Greenwood variance, log(-log) 95% CIs
  (lifelines ``KaplanMeierFitter``; R ``survfit(..., conf.type = "log-log")``);
- the log-rank test (Mantel 1966; lifelines ``logrank_test``; R ``survdiff``);
- Cox proportional hazards (Cox 1972) with Efron ties (lifelines ``CoxPHFitter``; R ``coxph``'s default),
  univariable and adjusted for age and site (site as dummies against the first site in sorted order, as R's
  ``factor``); Wald CIs and p-values;
- the Grambsch & Therneau (1994) test of scaled Schoenfeld residuals against 1 - KM(t-) (R's default "km"
  transform), via lifelines ``proportional_hazard_test``. That is the approximate form of the test that R's
  ``cox.zph`` computed before survival 3.0; survival >= 3.0 uses an exact score test whose values differ a
  little (both are recorded in the reference output).

Reading predictions and outcomes files into a cohort lives in :mod:`evaluation.survival_cohort`; the report
(Markdown, JSON, figure) in :mod:`evaluation.survival_report`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthscan.errors import BadInputError

GROUPS = ("predicted normal", "predicted abnormal")  # predicted_abnormal = 0, 1
ADJUST_FOR = ("age_years", "site")


def format_p(p_value: float) -> str:
    """p-values as papers print them: ``<0.0001`` below that, else 2 significant digits (at most 4 decimals)."""
    if not np.isfinite(p_value):
        return "n/a"
    if p_value < 1e-4:
        return "<0.0001"
    return f"{p_value:.2g}" if p_value < 0.001 else f"{p_value:.3f}".rstrip("0").rstrip(".") or "0"


def p_text(p_value: float) -> str:
    """``p<0.0001`` or ``p=0.003``."""
    text = format_p(p_value)
    return f"p{text}" if text.startswith("<") else f"p={text}"


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% confidence interval (``inf`` where a bound is not reached)."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float = float("nan")

    def summary(self, digits: int = 2) -> str:
        def number(x):
            return "not reached" if np.isinf(x) else ("n/a" if np.isnan(x) else f"{x:.{digits}f}")
        text = f"{number(self.estimate)} ({number(self.ci_low)}-{number(self.ci_high)})"
        return text if np.isnan(self.p_value) else f"{text}, {p_text(self.p_value)}"


@dataclass(frozen=True)
class HazardRatio:
    """One Cox term: hazard ratio exp(coef) with Wald 95% CI and p-value."""

    term: str
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    coef: float
    se: float

    def summary(self) -> str:
        return (f"{self.term}: HR {self.estimate:.2f} (95% CI {self.ci_low:.2f}-{self.ci_high:.2f}), "
                f"{p_text(self.p_value)}")


@dataclass(frozen=True)
class ProportionalHazardsTest:
    """Grambsch-Therneau test per term (chi-square, 1 df) and globally; small p = hazards not proportional."""

    terms: tuple[str, ...]
    statistics: tuple[float, ...]
    p_values: tuple[float, ...]
    global_statistic: float
    global_df: int
    p_value: float  # the global test
    transform: str = "km"

    def summary(self) -> str:
        parts = [f"{t} chi2={s:.2f} {p_text(p)}" for t, s, p in zip(self.terms, self.statistics, self.p_values)]
        return (f"PH test ({self.transform}): " + "; ".join(parts)
                + f"; global chi2={self.global_statistic:.2f} ({self.global_df} df) {p_text(self.p_value)}")


@dataclass(frozen=True)
class CoxModel:
    """A fitted Cox model: its hazard ratios, fit statistics and proportional-hazards check."""

    name: str
    hazard_ratios: tuple[HazardRatio, ...]
    n: int
    n_events: int
    log_likelihood: float
    concordance: float
    ph_test: ProportionalHazardsTest
    notes: tuple[str, ...] = ()

    def __getitem__(self, term: str) -> HazardRatio:
        for hazard_ratio in self.hazard_ratios:
            if hazard_ratio.term == term:
                return hazard_ratio
        raise KeyError(term)

    def summary(self) -> str:
        lines = [f"Cox {self.name} (n={self.n}, events={self.n_events}, concordance={self.concordance:.3f})"]
        return "\n".join(lines + ["  " + hr.summary() for hr in self.hazard_ratios] + ["  " + self.ph_test.summary()])


@dataclass(frozen=True)
class LogRankTest:
    """Log-rank test of equal survival in the two groups (chi-square with 1 df)."""

    statistic: float
    df: int
    p_value: float
    observed: tuple[float, float]  # events per group, in GROUPS order
    expected: tuple[float, float]

    def summary(self) -> str:
        return f"log-rank chi2={self.statistic:.2f} ({self.df} df), {p_text(self.p_value)}"


@dataclass(frozen=True, eq=False)
class KaplanMeierCurve:
    """Kaplan-Meier estimate for one group: step function on ``time_days`` with pointwise log(-log) 95% CIs."""

    group: str
    n: int
    n_events: int
    time_days: np.ndarray  # 0 and every distinct observed time
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_at_risk: np.ndarray  # studies with time >= time_days
    median_days: Estimate

    def at(self, time_days: float) -> tuple[Estimate, int]:
        """Survival (with CI) at a time and the number still at risk; NaN beyond the last observed time."""
        if time_days > self.time_days[-1]:
            return Estimate(np.nan, np.nan, np.nan), 0
        i = int(np.searchsorted(self.time_days, time_days, side="right")) - 1
        j = int(np.searchsorted(self.time_days, time_days, side="left"))
        return Estimate(self.survival[i], self.ci_low[i], self.ci_high[i]), int(self.n_at_risk[j])

    def summary(self) -> str:
        return f"{self.group}: n={self.n}, events={self.n_events}, median days {self.median_days.summary(0)}"


def _lifelines_warnings(caught) -> list[str]:
    return [str(w.message).strip().splitlines()[0] for w in caught if w.category.__module__.startswith("lifelines")]


def _n_at_risk(durations, times) -> np.ndarray:
    """Number of studies with a duration >= each of ``times``."""
    return len(durations) - np.searchsorted(np.sort(np.asarray(durations, float)), times, side="left")


def _kaplan_meier(group: str, durations: pd.Series, events: pd.Series, alpha: float) -> KaplanMeierCurve:
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    fitter = KaplanMeierFitter(alpha=alpha).fit(durations, events, label=group)
    confidence = fitter.confidence_interval_survival_function_
    lower, upper = confidence.iloc[:, 0], confidence.iloc[:, 1]
    timeline = fitter.survival_function_.index.to_numpy(float)
    n_at_risk = _n_at_risk(durations, timeline)
    # the median's CI is where the CI curves cross 0.5 (Brookmeyer & Crowley 1982), as R's survfit reports it
    median = Estimate(float(fitter.median_survival_time_), float(median_survival_times(lower)),
                      float(median_survival_times(upper)))
    return KaplanMeierCurve(group, int(len(durations)), int(events.sum()), timeline,
                            fitter.survival_function_.iloc[:, 0].to_numpy(float), lower.to_numpy(float),
                            upper.to_numpy(float), n_at_risk, median)


def _one_minus_km_before(durations, events, weights):
    """1 - KM(t-), R ``cox.zph``'s "km" time transform (lifelines' own "km" uses the right-continuous KM(t))."""
    from lifelines import KaplanMeierFitter

    survival = KaplanMeierFitter().fit(durations, events, weights=weights).survival_function_.iloc[:, 0]
    before = np.searchsorted(survival.index.to_numpy(), np.asarray(durations, float), side="left") - 1
    values = np.where(before >= 0, survival.to_numpy()[np.maximum(before, 0)], 1.0)
    return pd.Series(1.0 - values, index=durations.index)


def proportional_hazards_test(fitter, data: pd.DataFrame) -> ProportionalHazardsTest:
    """Grambsch-Therneau test for a fitted lifelines CoxPHFitter (per term via lifelines, global as R < 3.0)."""
    from lifelines.statistics import proportional_hazard_test
    from scipy.stats import chi2

    scaled = fitter.compute_residuals(data, kind="scaled_schoenfeld")
    result = proportional_hazard_test(fitter, data, time_transform=_one_minus_km_before,
                                      precomputed_residuals=scaled)
    table = result.summary.reindex(list(scaled.columns))
    events = fitter.event_observed
    transformed = _one_minus_km_before(fitter.durations, events, fitter.weights)[events.to_numpy()].to_numpy()
    centred = transformed - transformed.mean()
    # global statistic: test' V^-1 test / (d * sum(centred^2)), test = centred . scaled residuals
    test = centred @ scaled.to_numpy()
    variance = fitter.variance_matrix_.loc[scaled.columns, scaled.columns].to_numpy()
    statistic = float(test @ np.linalg.solve(variance, test) / (events.sum() * (centred ** 2).sum()))
    return ProportionalHazardsTest(tuple(scaled.columns), tuple(table["test_statistic"].astype(float)),
                                   tuple(table["p"].astype(float)), statistic, len(test),
                                   float(chi2.sf(statistic, len(test))))


def fit_cox(data: pd.DataFrame, covariates: list[str], name: str, alpha: float = 0.05) -> CoxModel:
    """Cox model of ``time_days``/``event`` on numeric ``covariates`` (Efron ties), with its PH test."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    columns = ["time_days", "event", *covariates]
    fitter = CoxPHFitter(alpha=alpha)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # tight convergence, so that coefficients agree with R's coxph (eps 1e-9) to ~1e-7
            fitter.fit(data[columns], duration_col="time_days", event_col="event",
                       fit_options={"precision": 1e-10})
            ph_test = proportional_hazards_test(fitter, data[columns])
        except (ConvergenceError, np.linalg.LinAlgError) as error:
            raise BadInputError(f"the {name} Cox model could not be fitted on these data "
                                f"({str(error).strip().splitlines()[0]})") from None
    intervals = np.exp(fitter.confidence_intervals_.to_numpy())
    hazard_ratios = tuple(
        HazardRatio(term, float(np.exp(fitter.params_[term])), float(intervals[i, 0]), float(intervals[i, 1]),
                    float(fitter.summary.loc[term, "p"]), float(fitter.params_[term]),
                    float(fitter.standard_errors_[term]))
        for i, term in enumerate(fitter.params_.index))
    return CoxModel(name, hazard_ratios, int(len(data)), int(data["event"].sum()), float(fitter.log_likelihood_),
                    float(fitter.concordance_index_), ph_test, tuple(_lifelines_warnings(caught)))


def site_dummies(site: pd.Series) -> pd.DataFrame:
    """0/1 columns ``site=<name>`` for every site but the reference (the first in sorted order, as R)."""
    levels = sorted(site.astype(str).unique())
    return pd.DataFrame({f"site={level}": (site.astype(str) == level).astype(float) for level in levels[1:]},
                        index=site.index)


class SurvivalAnalysis:
    """Kaplan-Meier, log-rank and Cox models of predicted-abnormal vs predicted-normal.

    ``fit(cohort)`` takes a frame with ``time_days``, ``event`` (0/1), ``predicted_abnormal`` (0/1) and, for the
    adjusted model, the ``adjust_for`` columns (numeric, or ``site``: dummies); covariates that are absent or
    constant are left out and said so in ``notes_``. Fitted: ``km_`` (group -> curve), ``logrank_``,
    ``cox_univariable_``, ``cox_adjusted_`` (None without covariates), ``adjusted_for_``, ``reference_site_``.
    """

    def __init__(self, alpha: float = 0.05, adjust_for=ADJUST_FOR):
        self.alpha = alpha
        self.adjust_for = tuple(adjust_for)

    def __repr__(self) -> str:
        return f"SurvivalAnalysis(alpha={self.alpha}, adjust_for={self.adjust_for})"

    def fit(self, cohort: pd.DataFrame) -> "SurvivalAnalysis":
        from lifelines.statistics import logrank_test

        data = self._check(cohort)
        groups = data["predicted_abnormal"].to_numpy()
        self.notes_, self.reference_site_ = [], None
        self.cohort_ = data
        self.n_, self.n_events_ = int(len(data)), int(data["event"].sum())
        self.km_ = {name: _kaplan_meier(name, data["time_days"][groups == g], data["event"][groups == g], self.alpha)
                    for g, name in enumerate(GROUPS)}
        normal, abnormal = data[groups == 0], data[groups == 1]
        test = logrank_test(normal["time_days"], abnormal["time_days"], normal["event"], abnormal["event"])
        observed = (float(normal["event"].sum()), float(abnormal["event"].sum()))
        expected = self._expected_events(data)
        self.logrank_ = LogRankTest(float(test.test_statistic), 1, float(test.p_value), observed, expected)
        self.cox_univariable_ = fit_cox(data, ["predicted_abnormal"], "univariable", self.alpha)
        design, self.adjusted_for_ = self._adjusted_design(data)
        self.cox_adjusted_ = (fit_cox(design, list(design.columns[2:]), "adjusted", self.alpha)
                              if self.adjusted_for_ else None)
        for model in (self.cox_univariable_, self.cox_adjusted_):
            if model is not None:
                self.notes_ += [f"{model.name} Cox model: {note}" for note in model.notes]
        return self

    def _check(self, cohort: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in ("time_days", "event", "predicted_abnormal") if c not in cohort.columns]
        if missing:
            raise BadInputError(f"survival cohort lacks column(s) {missing}")
        data = cohort.reset_index(drop=True).copy()
        for column in ("time_days", "event", "predicted_abnormal"):
            data[column] = pd.to_numeric(data[column], errors="coerce").astype(float)
        if data[["time_days", "event", "predicted_abnormal"]].isna().any().any():
            raise BadInputError("survival cohort has missing or non-numeric time_days, event or predicted_abnormal")
        if (data["time_days"] < 0).any():
            raise BadInputError("survival cohort has negative time_days")
        for column in ("event", "predicted_abnormal"):
            if not data[column].isin((0, 1)).all():
                raise BadInputError(f"survival cohort column {column!r} must be 0/1")
        for g, name in enumerate(GROUPS):
            in_group = data["predicted_abnormal"] == g
            if not in_group.any():
                raise BadInputError(f"no study is {name}: nothing to compare (check the threshold)")
            if data.loc[in_group, "event"].sum() == 0:
                raise BadInputError(f"no events among the {in_group.sum()} {name} studies: "
                                    "the hazard ratio is not estimable")
        return data

    @staticmethod
    def _expected_events(data: pd.DataFrame) -> tuple[float, float]:
        """Expected events per group under equal hazards (the log-rank E, as R's survdiff ``exp``)."""
        times = data["time_days"].to_numpy()
        event_times, deaths = np.unique(times[data["event"].to_numpy() == 1], return_counts=True)
        abnormal = _n_at_risk(times[data["predicted_abnormal"].to_numpy() == 1], event_times)
        expected_abnormal = float(np.sum(deaths * abnormal / _n_at_risk(times, event_times)))
        return float(deaths.sum()) - expected_abnormal, expected_abnormal

    def _adjusted_design(self, data: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
        design = data[["time_days", "event", "predicted_abnormal"]].copy()
        used = []
        for covariate in self.adjust_for:
            if covariate not in data.columns or data[covariate].isna().all():
                self.notes_.append(f"not adjusted for {covariate}: no values")
            elif data[covariate].isna().any():
                raise BadInputError(f"adjusting for {covariate}: {int(data[covariate].isna().sum())} studies "
                                    "lack a value (fill them in or leave the column blank)")
            elif covariate == "site":
                if data["site"].nunique() < 2:
                    self.notes_.append(f"not adjusted for site: one site only ({data['site'].iloc[0]})")
                    continue
                self.reference_site_ = sorted(data["site"].astype(str).unique())[0]
                self.notes_.append(f"site dummies against the reference site {self.reference_site_!r}")
                design = design.join(site_dummies(data["site"]))
                used.append(covariate)
            elif data[covariate].nunique() < 2:
                self.notes_.append(f"not adjusted for {covariate}: the same value for every study")
            else:
                design[covariate] = pd.to_numeric(data[covariate]).astype(float)
                used.append(covariate)
        return design, tuple(used)

    def summary(self) -> str:
        lines = [f"{self.n_} studies, {self.n_events_} events"]
        lines += [curve.summary() for curve in self.km_.values()] + [self.logrank_.summary()]
        lines += [model.summary() for model in (self.cox_univariable_, self.cox_adjusted_) if model is not None]
        return "\n".join(lines + [f"note: {note}" for note in self.notes_])

    def plot_km(self, path, title: str | None = None) -> None:
        """Kaplan-Meier figure (PNG) with 95% CI bands and a numbers-at-risk table, time in months."""
        from lifelines import KaplanMeierFitter
        from lifelines.plotting import add_at_risk_counts
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(7.5, 6.6), dpi=150)
        FigureCanvasAgg(figure)
        axes = figure.add_axes((0.25, 0.40, 0.70, 0.53))  # room below for the numbers-at-risk table
        fitters = []
        for name, colour in zip(GROUPS, ("#1f77b4", "#d62728")):
            rows = self.cohort_[self.cohort_["predicted_abnormal"] == GROUPS.index(name)]
            fitter = KaplanMeierFitter(alpha=self.alpha).fit(rows["time_days"] / 30.4375, rows["event"],
                                                             label=f"{name} (n={len(rows)})")
            fitter.plot_survival_function(ax=axes, ci_show=True, show_censors=True, color=colour,
                                          censor_styles={"ms": 4, "marker": "|"})
            fitters.append(fitter)
        axes.set_xlabel("months since scan")
        axes.set_ylabel("survival probability")
        axes.set_ylim(0, 1.02)
        axes.set_xlim(left=0)
        hr = self.cox_univariable_["predicted_abnormal"]
        axes.set_title(title or f"log-rank {p_text(self.logrank_.p_value)}; Cox HR {hr.estimate:.2f} "
                       f"(95% CI {hr.ci_low:.2f}-{hr.ci_high:.2f})", fontsize=10)
        axes.legend(loc="lower left", fontsize=8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifelines' table layout warns on tight figures
            add_at_risk_counts(*fitters, ax=axes, fig=figure, rows_to_show=["At risk", "Events", "Censored"],
                               labels=list(GROUPS))
        figure.savefig(path, format="png")
