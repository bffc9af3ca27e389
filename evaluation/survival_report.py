"""The survival report: ``survival.md`` (tables), ``survival.json`` (every number) and ``km.png``, written atomically.

A report folder records the run that made it (a fingerprint of both input files and the selection). Writing
into a folder that holds a different run's report is an error; rerunning the same run replaces it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import lifelines

from evaluation.survival import GROUPS, Estimate, SurvivalAnalysis, format_p, p_text
from evaluation.survival_cohort import Cohort
from synthscan.errors import BadInputError

REPORT_TIMES_DAYS = (365, 730, 1095, 1825)  # 1, 2, 3 and 5 years
FILES = ("survival.md", "survival.json", "km.png")


def _finite(value):
    """JSON has no inf/NaN: unknown or unreached values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def report_dict(analysis: SurvivalAnalysis, cohort: Cohort) -> dict:
    km = {}
    for name, curve in analysis.km_.items():
        at_times = []
        for t in REPORT_TIMES_DAYS:
            estimate, at_risk = curve.at(t)
            at_times.append({"time_days": t, "n_at_risk": at_risk, **asdict(estimate)})
        km[name] = {"n": curve.n, "n_events": curve.n_events, "median_days": asdict(curve.median_days),
                    "survival_at": at_times}
    cox = {model.name: {"n": model.n, "n_events": model.n_events, "log_likelihood": model.log_likelihood,
                        "concordance": model.concordance, "hazard_ratios": [asdict(hr) for hr in model.hazard_ratios],
                        "proportional_hazards_test": asdict(model.ph_test), "notes": list(model.notes)}
           for model in (analysis.cox_univariable_, analysis.cox_adjusted_) if model is not None}
    return _finite({
        "run": {"fingerprint": cohort.fingerprint, "predictions": cohort.predictions_path,
                "outcomes": cohort.outcomes_path, "task": cohort.task, "arm": cohort.arm, "seeds": list(cohort.seeds),
                "threshold": cohort.threshold, "threshold_source": cohort.threshold_source,
                "lifelines": lifelines.__version__},
        "cohort": {"n_predicted": cohort.n_predicted, "n_outcomes": cohort.n_outcomes, "n_matched": cohort.n_matched,
                   "n_events": analysis.n_events_, "groups": list(GROUPS)},
        "kaplan_meier": km,
        "logrank": asdict(analysis.logrank_),
        "cox": cox,
        "adjusted_for": list(analysis.adjusted_for_),
        "reference_site": analysis.reference_site_,
        "notes": list(analysis.notes_),
    })


def _term_label(term: str, reference_site: str | None) -> str:
    if term == "predicted_abnormal":
        return "predicted abnormal (vs normal)"
    if term == "age_years":
        return "age (per year)"
    return f"site {term[5:]} (vs {reference_site})" if term.startswith("site=") else term


def _survival_cell(estimate: Estimate, at_risk: int) -> str:
    if math.isnan(estimate.estimate):
        return "beyond follow-up"
    return f"{estimate.summary(2)} [{at_risk} at risk]"


def report_markdown(analysis: SurvivalAnalysis, cohort: Cohort) -> str:
    years = [f"{t / 365:g} y" for t in REPORT_TIMES_DAYS]
    title = ", ".join(f"{key} {value}" for key, value in (("task", cohort.task), ("arm", cohort.arm)) if value)
    lines = [f"# Survival by predicted class{f' ({title})' if title else ''}", "",
             f"- predictions: `{cohort.predictions_path}`", f"- outcomes: `{cohort.outcomes_path}`",
             f"- {cohort.summary()}", f"- {analysis.n_} studies, {analysis.n_events_} events", "",
             "## Kaplan-Meier (95% CI, log-log)", "",
             "| group | studies | events | median survival, days (95% CI) | " + " | ".join(years) + " |",
             "|---|---|---|---|" + "---|" * len(years)]
    for name, curve in analysis.km_.items():
        cells = [_survival_cell(*curve.at(t)) for t in REPORT_TIMES_DAYS]
        lines.append(f"| {name} | {curve.n} | {curve.n_events} | {curve.median_days.summary(0)} | "
                     + " | ".join(cells) + " |")
    logrank = analysis.logrank_
    lines += ["", f"Log-rank test: chi-square {logrank.statistic:.2f} (1 df), **{p_text(logrank.p_value)}**; "
              f"events observed/expected: normal {logrank.observed[0]:.0f}/{logrank.expected[0]:.1f}, "
              f"abnormal {logrank.observed[1]:.0f}/{logrank.expected[1]:.1f}.", "",
              "![Kaplan-Meier curves with numbers at risk](km.png)", "",
              "## Cox proportional hazards (Efron ties, Wald 95% CI)", "",
              "| model | term | hazard ratio (95% CI) | p |", "|---|---|---|---|"]
    models = [m for m in (analysis.cox_univariable_, analysis.cox_adjusted_) if m is not None]
    for model in models:
        for hr in model.hazard_ratios:
            label = _term_label(hr.term, analysis.reference_site_)
            lines.append(f"| {model.name} | {label} | {hr.estimate:.2f} ({hr.ci_low:.2f}-{hr.ci_high:.2f}) | "
                         f"{format_p(hr.p_value)} |")
    adjusted = (f"Adjusted model: adjusted for {', '.join(analysis.adjusted_for_)}." if analysis.adjusted_for_
                else "No adjusted model: no covariate to adjust for (see notes).")
    lines += ["", f"{adjusted} Concordance: " + ", ".join(f"{m.name} {m.concordance:.3f}" for m in models) + ".",
              "",
              "## Proportional-hazards check", "",
              "Grambsch-Therneau test of scaled Schoenfeld residuals against 1 - KM(t-) (R `cox.zph` \"km\" "
              "transform, pre-3.0 approximation). A small p means the hazard ratio changes during follow-up; "
              "the Cox HR is then an average over time and the KM curves tell the fuller story.", "",
              "| model | term | chi-square | p |", "|---|---|---|---|"]
    for model in models:
        test = model.ph_test
        for term, statistic, p_value in zip(test.terms, test.statistics, test.p_values):
            label = _term_label(term, analysis.reference_site_)
            lines.append(f"| {model.name} | {label} | {statistic:.2f} | {format_p(p_value)} |")
        if test.global_df > 1:
            lines.append(f"| {model.name} | global ({test.global_df} df) | {test.global_statistic:.2f} | "
                         f"{format_p(test.p_value)} |")
    if analysis.notes_:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in analysis.notes_]
    lines += ["", "## Methods", "",
              "Predicted abnormal = score >= threshold. Kaplan-Meier with Greenwood variance and log(-log) CIs; "
              "log-rank test; Cox proportional hazards with Efron ties, univariable and adjusted for age (linear, "
              "per year) and site (dummies against the first site in sorted order). Computed with lifelines "
              f"{lifelines.__version__} (`evaluation/survival.py`); the conventions match R's survival package "
              "(tests/reference/survival_reference.R). Times are days from the scan.", ""]
    return "\n".join(lines)


def _existing_run(out: Path) -> str | None:
    """The fingerprint of the report already in ``out``; None for an empty folder; error for anything else."""
    if out.is_file():
        raise BadInputError("--out is a file, expected a folder", out)
    entries = [p.name for p in out.iterdir()]
    if not entries:
        return None
    try:
        return json.loads((out / "survival.json").read_text())["run"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BadInputError(f"folder holds other files ({', '.join(sorted(entries)[:3])}) and no survival report: "
                            "choose another --out", out) from None


def write_report(analysis: SurvivalAnalysis, cohort: Cohort, out) -> Path:
    """Write the three files into a temporary folder, then move it to ``out`` (replacing only the same run)."""
    out = Path(out)
    existing = _existing_run(out) if out.exists() else None
    if existing is not None and existing != cohort.fingerprint:
        raise BadInputError("holds the survival report of a different run (other inputs or options): choose "
                            "another --out or delete it", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the report is an ordinary folder
    try:
        analysis.plot_km(staging / "km.png")
        (staging / "survival.json").write_text(json.dumps(report_dict(analysis, cohort), indent=2,
                                                          allow_nan=False) + "\n")
        (staging / "survival.md").write_text(report_markdown(analysis, cohort))
        if out.exists():  # an empty folder or the same run's report: swap it out, then delete it
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "report")
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
