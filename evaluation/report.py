"""The report of a ``synthscan reproduce`` run: ``report.md``, a self-contained ``report.html`` and figures.

Every number comes from the stage outputs of the run folder (evaluation/reproduce.py) through the statistics
modules (evaluation/sites.py for AUCs, gains and paired tests); nothing is recomputed here by hand. The
"paper vs this run" table applies rules stated in the report itself, so that "reproduced" means one thing.
A stage that did not run appears as "not run"; the report still builds.
"""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pandas as pd

from evaluation.metrics import p_text
from synthscan.io.atomic import atomic_path, write_text

PAPER = "Haberl et al., EJNMMI 2025 (doi 10.1007/s00259-025-07091-8)"
PAPER_GAIN = {"metastasis": (33.0, 10.0), "amyloidosis": (5.0, 4.0)}  # mean (SD) relative AUC gain, %
ALPHA = 0.05


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _ci(estimate, low, high, digits: int = 3) -> str:
    return f"{_number(estimate, digits)} (95% CI {_number(low, digits)}-{_number(high, digits)})"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _guidance(value) -> str:
    """A guidance scale, or one per condition ({"metastasis": 8.0, ...} -> "metastasis 8, ...")."""
    return ", ".join(f"{k} {v:g}" for k, v in value.items()) if isinstance(value, dict) else str(value)


def _sampling(generator: dict) -> str:
    """How the generator sampled: guidance, negative conditions, guidance interval, steps."""
    parts = [f"guidance {_guidance(generator.get('guidance_scale', 'n/a'))}"]
    parts += [f"{c} guided away from {negative} at {scale:g}"
              for c, (negative, scale) in generator.get("negative_guidance", {}).items()]
    if generator.get("guidance_interval"):
        parts.append("guidance at noise levels ({:g}, {:g}]".format(*generator["guidance_interval"]))
    return ", ".join(parts + [f"{generator.get('steps', 'n/a')} steps"])


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


# ------------------------------------------------------------------------------------------ downstream
class TaskResults:
    """AUCs, comparisons against the reference arm and figures of one task."""

    def __init__(self, predictions: pd.DataFrame, task: str, info: dict, figures: Path):
        from evaluation.sites import compare_arms, site_matrix

        self.task, self.info = task, info
        self.frame = predictions[predictions["task"] == task]
        self.arms = [arm["name"] for arm in info["arms"] if arm["name"] in set(self.frame["arm"])]
        self.reference, self.primary = info["reference_arm"], info["primary_arm"]
        self.matrix = site_matrix(self.frame, task)
        self.comparisons = {}
        for arm in self.arms:
            if arm != self.reference:
                try:
                    self.comparisons[arm] = compare_arms(self.frame, self.reference, arm, task)
                except Exception as error:  # noqa: BLE001 - an undefined comparison is reported, not fatal
                    self.comparisons[arm] = str(error)
        self.figures = self._figures(figures)

    def _figures(self, folder: Path) -> list[tuple[str, Path]]:
        from evaluation.compare import gain_figure, roc_figure, roc_points

        made = []
        shown = [a for a in (self.reference, self.primary, "upper-bound") if a in self.arms]
        for site in sorted(self.frame["site"].unique()):
            curves = {}
            for arm in shown:
                lines = []
                for _, run in self.frame[(self.frame["arm"] == arm) & (self.frame["site"] == site)].groupby("seed"):
                    if run["label"].nunique() == 2:
                        lines.append(roc_points(run["label"].to_numpy(), run["score"].to_numpy()))
                if lines:
                    curves[arm] = lines
            if curves:
                path = folder / f"roc-{self.task}-{site}.png"
                roc_figure(curves, f"{self.task}, {site}", path)
                made.append((f"ROC, {self.task}, {site} (one line per seed)", path))
        comparison = self.comparisons.get(self.primary)
        if comparison is not None and not isinstance(comparison, str):
            path = folder / f"gain-{self.task}.png"
            gain_figure(comparison.per_pair, self.reference, self.primary, path)
            made.append((f"relative AUC gain per site, {self.primary} vs {self.reference} (bar: mean +- SD over "
                         "seeds; dots: seeds)", path))
        return made

    def auc_table(self) -> list[str]:
        per_site = self.matrix.groupby(["arm", "site"])[["auc", "ci_low", "ci_high"]].mean()
        sites = [s for s in sorted(self.matrix["site"].unique()) if s != "pooled"] + ["pooled"]
        rows = []
        for arm in self.arms:
            cells = []
            for site in sites:
                value = per_site.loc[(arm, site)] if (arm, site) in per_site.index else None
                if value is None or not math.isfinite(value["auc"]):
                    cells.append("undefined" if value is not None else "-")
                elif math.isfinite(value["ci_low"]) and math.isfinite(value["ci_high"]):
                    cells.append(f"{_number(value['auc'])} ({_number(value['ci_low'])}-{_number(value['ci_high'])})")
                else:
                    cells.append(f"{_number(value['auc'])} (no CI)")
            rows.append([arm] + cells)
        return _table(["arm"] + sites, rows)

    def comparison_table(self) -> list[str]:
        rows = []
        for arm, comparison in self.comparisons.items():
            if isinstance(comparison, str):
                rows.append([arm, "not defined: " + comparison, "", "", "", ""])
                continue
            tested = comparison.per_pair.dropna(subset=["delong_p_holm"])
            better = int(((tested["delong_p_holm"] < ALPHA) & (tested["gain"] > 0)).sum())
            worse = int(((tested["delong_p_holm"] < ALPHA) & (tested["gain"] < 0)).sum())
            rows.append([f"**{arm}**" if arm == self.primary else arm,
                         f"{100 * comparison.relative:+.1f}% +- {100 * comparison.relative_sd:.1f}%",
                         f"{100 * comparison.relative_ci_low:+.1f}% to {100 * comparison.relative_ci_high:+.1f}%",
                         f"{comparison.estimate:+.3f} ({comparison.ci_low:+.3f} to {comparison.ci_high:+.3f})",
                         p_text(comparison.p_value),
                         f"{better} better / {worse} worse of {len(tested)}"])
        return _table(["arm vs " + self.reference, "relative AUC gain, mean +- SD (seed x site)", "95% CI",
                       "absolute AUC gain (95% CI)", "Wilcoxon signed-rank", "DeLong per seed x site, Holm p < 0.05"],
                      rows)


# ----------------------------------------------------------------------------------------- paper table
def _gain_verdict(comparison, paper_mean: float) -> str:
    if comparison is None or isinstance(comparison, str):
        return "not assessable"
    significant = comparison.p_value < ALPHA and comparison.relative_ci_low > 0
    if significant and comparison.relative_ci_low * 100 <= paper_mean <= comparison.relative_ci_high * 100:
        return "reproduced (direction, significance and size)"
    if significant:
        return "reproduced in direction and significance, not in size"
    if comparison.relative > 0:
        return "not reproduced (positive but not significant)"
    return "not reproduced (no gain)"


def paper_table(tasks: dict, survival: dict | None, reader: dict | None) -> list[str]:
    rows = []
    for task, (mean, sd) in PAPER_GAIN.items():
        result = tasks.get(task)
        comparison = None if result is None else result.comparisons.get(result.primary)
        if comparison is None or isinstance(comparison, str):
            ours = "not run" if result is None else f"not defined ({comparison})"
        else:
            ours = (f"{100 * comparison.relative:+.1f}% +- {100 * comparison.relative_sd:.1f}% (95% CI "
                    f"{100 * comparison.relative_ci_low:+.1f}% to {100 * comparison.relative_ci_high:+.1f}%), "
                    f"Wilcoxon {p_text(comparison.p_value)}, {comparison.n_pairs} seed x site pairs")
        rows.append([f"AUC gain with synthetic data, {task}", f"+{mean:.0f}% +- {sd:.0f}%, p < 0.0001", ours,
                     _gain_verdict(comparison, mean)])
    if survival is None:
        rows.append(["log-rank, predicted abnormal vs normal", "p < 0.0001", "not run", "not assessable"])
    elif "reason" in survival:
        rows.append(["log-rank, predicted abnormal vs normal", "p < 0.0001", f"not estimable: {survival['reason']}",
                     "not assessable"])
    else:
        p = survival["logrank"]["p_value"]
        hr = _predicted_abnormal_hr(survival)
        ours = f"{p_text(p)}" + (f"; Cox HR {_ci(hr['estimate'], hr['ci_low'], hr['ci_high'], 2)}" if hr else "")
        worse = hr is not None and hr["estimate"] > 1
        verdict = ("reproduced" if p < 0.0001 and worse else "reproduced in direction (p >= 0.0001)"
                   if p < ALPHA and worse else "not reproduced")
        rows.append(["log-rank, predicted abnormal vs normal", "p < 0.0001", ours, verdict])
    if reader is None:
        rows.append(["reader study accuracy (real vs synthetic)", "0.48 (0.46-0.51), 4 readers, 400 cases",
                     "not run", "not assessable"])
    else:
        pooled, fleiss = reader["pooled"], reader["fleiss"]
        chance = pooled["wilson_low"] <= 0.5 <= pooled["wilson_high"]
        rows.append(["reader study accuracy (real vs synthetic)", "0.48 (0.46-0.51), 4 readers, 400 cases",
                     f"{_ci(pooled['estimate'], pooled['wilson_low'], pooled['wilson_high'])} (Wilson; clustered "
                     f"bootstrap {_number(pooled['ci_low'])}-{_number(pooled['ci_high'])}), "
                     f"{reader['n_readers']} simulated readers, {reader['n_cases']} cases",
                     "reproduced (chance)" if chance else "not reproduced (synthetic scans recognised)"])
        rows.append(["Fleiss' kappa; disagreements", "0.18; 239/400",
                     f"{_ci(fleiss['estimate'], fleiss['ci_low'], fleiss['ci_high'])}; "
                     f"{reader['disagreements']}/{reader['n_cases']}", "simulated readers: see the reader section"])
    return _table(["claim", f"paper ({PAPER})", "this run", "reproduced? (rules below)"], rows)


def _predicted_abnormal_hr(survival: dict) -> dict | None:
    for model in survival.get("cox", {}).values():
        for hr in model["hazard_ratios"]:
            if hr["term"] == "predicted_abnormal":
                return hr
    return None


# ------------------------------------------------------------------------------------------- sections
def _survival_section(survival: dict | None, run_dir: Path, info: dict) -> list[str]:
    lines = ["## Survival association", ""]
    if survival is None:
        return lines + ["Not run.", ""]
    if "reason" in survival:
        return lines + [f"Not estimable in this run: {survival['reason']}", ""]
    plan = info.get("survival", {})
    lines += [f"Pre-specified: task {plan.get('task')}, arm {plan.get('arm')}, seed {plan.get('seed')}; operating "
              f"point {_number(survival['run']['threshold'])} ({survival['run']['threshold_source']}); "
              f"{survival['cohort']['n_matched']} test studies, {survival['cohort']['n_events']} events.", ""]
    rows = [[name, km["n"], km["n_events"], _ci(km["median_days"]["estimate"], km["median_days"]["ci_low"],
                                               km["median_days"]["ci_high"], 0)]
            for name, km in survival["kaplan_meier"].items()]
    lines += _table(["group", "n", "events", "median survival, days (95% CI)"], rows)
    lines += [f"- log-rank: chi2 {survival['logrank']['statistic']:.2f}, {p_text(survival['logrank']['p_value'])}"]
    for name, model in survival["cox"].items():
        for hr in model["hazard_ratios"]:
            lines.append(f"- Cox {name}: {hr['term']} HR {_ci(hr['estimate'], hr['ci_low'], hr['ci_high'], 2)}, "
                         f"{p_text(hr['p_value'])}")
        lines.append(f"- Cox {name}: proportional-hazards test (global) "
                     f"{p_text(model['proportional_hazards_test']['p_value'])}")
    return lines + ["", "![Kaplan-Meier curves](survival/km.png)", ""]


def _fidelity_section(fidelity: dict | None, run_dir: Path) -> list[str]:
    lines = ["## Fidelity of the synthetic scans", ""]
    if fidelity is None:
        lines += ["Not run.", ""]
    else:
        def accuracy(part, name):
            r = fidelity[part].get(name, {})
            return _ci(r.get("accuracy"), r.get("ci_low"), r.get("ci_high"))

        def difference(name):  # signed, so the interval reads "-0.194 to +0.390"
            d = fidelity.get("accuracy_difference", {}).get(name)
            return f"{d['estimate']:+.3f} (95% CI {d['ci_low']:+.3f} to {d['ci_high']:+.3f})" if d else "n/a"

        rows = [[name, accuracy("judge_accuracy_real", name), accuracy("conditional_accuracy", name), difference(name)]
                for name in ("normal", "metastasis", "amyloidosis", "overall")]
        lines += _table(["condition", "judge accuracy, real held-out (Wilson)", "conditional accuracy, synthetic (Wilson)",
                         "synthetic - real (Newcombe)"], rows)
        d = fidelity["detectability_auc"]
        ratios = ", ".join(f"{ratio:.1f}x" for ratio in fidelity["frechet_ratios"])
        lines += [f"- Frechet distance in judge features (n = {fidelity['n_frechet']}), synthetic vs real over real "
                  f"vs real: median {fidelity['frechet_ratio']:.1f}x over the judge's networks ({ratios})",
                  f"- precision {fidelity['precision']:.3f}, recall {fidelity['recall']:.3f}",
                  f"- real-vs-synthetic detectability AUC {_ci(d['estimate'], d['ci_low'], d['ci_high'])}"]
        if fidelity.get("judge_by_extent"):
            lines.append("- the judge on real metastatic scans by extent of disease (Soloway): " + ", ".join(
                f"{name} {_ci(r['accuracy'], r['ci_low'], r['ci_high'])}, n = {r['n']}"
                for name, r in fidelity["judge_by_extent"].items()))
        lines.append("")
    for condition in ("normal", "metastasis", "amyloidosis"):
        if (run_dir / "synthetic" / condition / "contact_sheet.png").is_file():
            lines += [f"![synthetic {condition}](synthetic/{condition}/contact_sheet.png)", ""]
    return lines


def _audit_section(audit: dict | None) -> list[str]:
    lines = ["## Memorization audit", ""]
    if audit is None:
        return lines + ["Not run.", ""]
    lines += [f"- {rule['summary']}" for rule in audit["rules"]]
    lines += [f"- membership inference, {attack['summary']}" for attack in audit["membership"]]
    lines += [f"- memorization detected: **{'yes' if audit['memorization_detected'] else 'no'}**",
              f"- flagged pairs drawn: {len(audit['flagged_pairs'])}", "",
              "![distance distributions](audit/distances.png)", ""]
    return lines + [f"- warning: {w}" for w in audit.get("warnings", [])] + [""]


def _reader_section(reader: dict | None, readers: dict | None) -> list[str]:
    lines = ["## Simulated reader study", ""]
    if reader is None:
        return lines + ["Not run.", ""]
    if readers:
        lines += [f"Simulated readers, not people: real-vs-synthetic accuracy {readers['accuracy']:.3f} "
                  f"({readers['why']}), latent correlation {readers['correlation']}. The study packets, the key and "
                  "the scoring are the real ones (`synthscan reader-study`); only the responses are simulated, so "
                  "this section tests the pipeline and shows what readers as good as the detectability classifier "
                  "would report, not what radiologists would.", ""]
    pooled, fleiss = reader["pooled"], reader["fleiss"]
    lines += [f"- accuracy {_ci(pooled['estimate'], pooled['ci_low'], pooled['ci_high'])} (clustered bootstrap; "
              f"Wilson {_number(pooled['wilson_low'])}-{_number(pooled['wilson_high'])})",
              f"- Fleiss' kappa {_ci(fleiss['estimate'], fleiss['ci_low'], fleiss['ci_high'])}",
              f"- disagreements: {reader['disagreements']} of {reader['n_cases']} cases", "",
              "![reader accuracy](reader/results/accuracy.png)", ""]
    return lines


CHECKLIST = [
    ("Data source, simulator version and dates", "header and Data: phantom sites, seeds, PHANTOM_VERSION"),
    ("Eligibility and case mix per site", "Data table (studies, patients, positives per site)"),
    ("Outcome / reference standard definition", "phantom ground truth (metastasis, amyloid grade >= 2); "
                                                "survival times simulated from the phantom hazard model"),
    ("Predictors / input images and preprocessing", "recipe [reproduce.classifier]: grid, views, arch"),
    ("Sample size and its justification", "Data table; no power calculation: CPU-scale recipe"),
    ("Missing data handling", "not applicable to simulated data; real manifests: rows without labels are "
                              "refused by the classifier harness"),
    ("Model specification and training", "recipe.toml (resolved) and every classifier's config.json"),
    ("Performance measures with CIs", "AUC per site with DeLong 95% CIs; gains with t-intervals over seed x site"),
    ("Paired comparisons and multiplicity", "Wilcoxon signed-rank over seed x site; DeLong per pair with Holm"),
    ("Internal and external validation", "internal split of the small site; four external sites"),
    ("Calibration", "not reported here (per run: `synthscan classify test` writes calibration)"),
    ("Subgroups / fairness by site", "AUC per site table, ROC and gain figures per site"),
    ("Synthetic data disclosure and privacy", "fidelity and memorization audit sections; samples marked "
                                              "synthetic in DICOM and manifests"),
    ("Reader study design", "simulated reader section (readers are simulated: stated there)"),
    ("Limitations", "Limitations section"),
    ("Code and data availability", "synthscan (this repository); the run folder holds every manifest, model "
                                   "and prediction"),
]


def _header(info: dict, run_dir: Path) -> list[str]:
    generator = info.get("generator", {})
    stages = info.get("stages", {})
    total = sum(stage["seconds"] for stage in stages.values())
    lines = [f"# synthscan reproduce: {info['recipe_name']}", "",
             f"Re-runs the study design of {PAPER} on "
             + ("the synthscan phantom world" if info.get("data_source") == "phantom" else "the user's manifests")
             + ".", "",
             f"- recipe: `{info['recipe_file']}` (sha256 `{info['recipe_sha256'][:16]}`), resolved copy in "
             "`recipe.toml`",
             f"- phantom simulator version **{info['phantom_version']}**; the recipe and the simulator version were "
             "fixed before any result was looked at, and the simulator was not tuned towards the paper's numbers",
             f"- generator: {generator.get('source', 'n/a')} (model hash `{str(generator.get('model_hash', ''))[:16]}`"
             f", {_sampling(generator)})",
             f"- seeds {info['seeds']}; tasks {', '.join(info['tasks'])}; primary (pre-specified) arm "
             f"`{info['primary_arm']}` vs reference `{info['reference_arm']}`",
             f"- synthscan {info['synthscan_version']}; started {info['started']}; machine {info['machine']}; "
             f"stage time {_minutes(total)}", ""]
    return lines


def _data_section(info: dict) -> list[str]:
    rows = [[name, site["site"], site["role"], site["tracer"], site["camera"], site["studies"], site["patients"],
             site["positives"]["metastasis"], site["positives"]["amyloidosis"]]
            for name, site in info.get("sites", {}).items()]
    return ["## Data", ""] + _table(["set", "site", "role", "tracer", "camera", "studies", "patients",
                                     "metastasis", "amyloidosis grade >= 2"], rows)


def _stage_section(info: dict) -> list[str]:
    rows = [[name, _minutes(stage["seconds"]), stage["finished"]] for name, stage in info.get("stages", {}).items()]
    return ["## Stage times", ""] + _table(["stage", "time", "finished (UTC)"], rows)


def _arms_section(info: dict) -> list[str]:
    rows = [[arm["name"], arm["description"]] for arm in info["arms"]]
    return ["## Arms", "", "Every arm trains the same classifier for the same number of optimizer steps; model "
            "selection uses the same real validation scans of the small site.", ""] + _table(["arm", "training data"],
                                                                                              rows)


def build_markdown(run_dir: Path, figures: Path) -> str:
    info = json.loads((run_dir / "run.json").read_text())
    predictions_path = run_dir / "predictions.csv"
    tasks = {}
    if predictions_path.is_file():
        predictions = pd.read_csv(predictions_path, dtype={"study_id": str, "site": str, "arm": str})
        tasks = {task: TaskResults(predictions, task, info, figures) for task in info["tasks"]
                 if (predictions["task"] == task).any()}
    survival = _read_json(run_dir / "survival" / "survival.json") or _read_json(
        run_dir / "survival" / "not_estimable.json")
    reader = _read_json(run_dir / "reader" / "results" / "results.json")
    lines = _header(info, run_dir)
    lines += ["## The paper's claims next to this run", ""] + paper_table(tasks, survival, reader)
    lines += ["Rules: a gain is *reproduced* when the pre-specified mixed arm beats the reference with a two-sided "
              "Wilcoxon p < 0.05 over seed x site pairs and a 95% CI of the mean relative gain above 0; *and in "
              "size* when that CI holds the paper's mean. The survival claim is reproduced when predicted-abnormal "
              "studies fare worse (HR > 1) with log-rank p < 0.0001. The reader claim is reproduced when the "
              "accuracy's 95% Wilson CI holds 0.5. A claim that is not reproduced is a finding about this "
              "phantom world and recipe, not a statement about the paper's data.", ""]
    lines += _data_section(info) + _arms_section(info)
    for task, result in tasks.items():
        lines += [f"## Downstream classification: {task}", "",
                  f"AUC per site (mean over {len(info['seeds'])} seeds of the AUC and of its DeLong 95% CI bounds; "
                  "'pooled' = all test scans of a run together; 'undefined': a site without positives or "
                  "without negatives for this task; 'no CI': too few of one class for DeLong's variance):", ""]
        lines += result.auc_table()
        lines += [f"Every arm against `{result.reference}` (paired by seed and test site):", ""]
        lines += result.comparison_table()
        for caption, path in result.figures:
            lines += [f"![{caption}](figures/{path.name})", ""]
    if not tasks:
        lines += ["## Downstream classification", "", "Not run.", ""]
    lines += _survival_section(survival, run_dir, info)
    lines += _fidelity_section(_read_json(run_dir / "fidelity" / "fidelity.json"), run_dir)
    lines += _audit_section(_read_json(run_dir / "audit" / "audit.json"))
    lines += _reader_section(reader, _read_json(run_dir / "reader" / "readers.json"))
    lines += _stage_section(info)
    lines += ["## Limitations", "",
              "- Simulated scans only: the phantom world has its own anatomy, lesions, tracers and cameras; effects "
              "that need real anatomy or real scanner differences cannot appear here.",
              "- CPU scale: small classifiers at a coarse grid and a few hundred test scans per site; the paper "
              "used thousands of scans and larger networks.",
              "- The reader study is simulated (see its section).", ""]
    lines += ["## Reporting checklist (TRIPOD+AI / CLAIM items)", ""]
    lines += _table(["item", "reported where"], [[item, where] for item, where in CHECKLIST])
    return "\n".join(lines)


def _html(markdown_text: str, run_dir: Path) -> str:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])

    def embed(match):
        path = run_dir / match.group(1)
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>synthscan reproduce</title>"
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")


def write_report(run_dir) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` (figures embedded) and ``figures/*.png`` into the run folder."""
    run_dir = Path(run_dir)
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    text = build_markdown(run_dir, figures)
    html = _html(text, run_dir)
    markdown_path, html_path = run_dir / "report.md", run_dir / "report.html"
    write_text(markdown_path, text + "\n")
    with atomic_path(html_path) as tmp:
        Path(tmp).write_text(html)
    return markdown_path, html_path

