"""Comparison report of two arms of classifier runs, paired by seed (``synthscan evaluate compare``).

Inputs are predictions.csv files (DESIGN.md section 5), one per run; the two arms are paired by their
``seed`` and must have predicted the same test scans. The statistics are those of evaluation/metrics.py and
evaluation/sites.py (AUC with DeLong CIs, the site matrix, absolute and relative gains with the Wilcoxon
signed-rank test over seed x site and DeLong per site and seed, Holm-adjusted); this module collects inputs,
draws the figures and writes the Markdown.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pandas as pd

from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path, write_text
from synthscan.io.table import read_csv_table

PREDICTION_COLUMNS = ("study_id", "site", "task", "label", "score", "seed", "arm")


# ------------------------------------------------------------------------------------------------ inputs
def predictions_file(path) -> Path:
    """A predictions.csv: the path itself, in it, or the one file of that name below it."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "predictions.csv").is_file():
        return path / "predictions.csv"
    found = sorted(path.rglob("predictions.csv")) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise BadInputError("no predictions.csv in this run folder (run classify test --out inside it)", path)
    raise BadInputError(f"{len(found)} predictions.csv files below this folder ({', '.join(map(str, found[:3]))}"
                        "...); give the files themselves", path)


def read_predictions(path) -> pd.DataFrame:
    path = predictions_file(path)
    frame = read_csv_table(path, "predictions file", dtype={"study_id": str, "site": str, "arm": str})
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise BadInputError(f"predictions lack column(s) {missing}", path)
    for column in ("score", "label"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.isna().any():
            row = int(np.flatnonzero(numbers.isna())[0]) + 2
            raise BadInputError(f"row {row}: {column} is blank or not a number", path)
        frame[column] = numbers
    frame.attrs["path"] = str(path)
    return frame


def read_arm(patterns, role: str) -> dict[int, pd.DataFrame]:
    """Predictions of one arm by seed, from glob patterns of run folders or files."""
    paths = []
    for pattern in patterns:
        matched = sorted(glob.glob(str(pattern)))
        if not matched:
            raise BadInputError(f"arm {role}: nothing matches {pattern!r}")
        paths += matched
    runs = {}
    for path in dict.fromkeys(paths):
        frame = read_predictions(path)
        seeds = frame["seed"].dropna().unique()
        if len(seeds) != 1:
            raise BadInputError(f"arm {role}: expected one seed per run, found {sorted(seeds)}", frame.attrs["path"])
        seed = int(seeds[0])
        if seed in runs:
            raise BadInputError(f"arm {role}: two runs with seed {seed} ({runs[seed].attrs['path']} and "
                                f"{frame.attrs['path']})")
        runs[seed] = frame
    return runs


def pair_by_seed(a: dict, b: dict) -> list[int]:
    """Seeds present in both arms; runs must share the task and the test scans."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise BadInputError(f"no seed in common between arm A (seeds {sorted(a)}) and arm B (seeds {sorted(b)})")
    tasks = {t for frame in list(a.values()) + list(b.values()) for t in frame["task"].unique()}
    if len(tasks) != 1:
        raise BadInputError(f"the runs were made for different tasks: {sorted(tasks)}")
    for seed in seeds:
        left, right = a[seed], b[seed]
        if set(left["study_id"]) != set(right["study_id"]):
            raise BadInputError(f"seed {seed}: arms A and B predicted different test scans "
                                f"({left.attrs['path']} vs {right.attrs['path']}); a paired comparison needs the same")
    return seeds


def read_baseline(path) -> pd.DataFrame | None:
    if path is None:
        return None
    path = Path(path)
    return read_predictions(path / "hcl_predictions.csv" if path.is_dir() else path)


# ----------------------------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _savefig(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    _pyplot().close(fig)


def roc_figure(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], title: str, path) -> None:
    """ROC curves per arm (one thin line per seed) on one axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    for index, (name, lines) in enumerate(curves.items()):
        for k, (fpr, tpr) in enumerate(lines):
            ax.plot(fpr, tpr, color=f"C{index}", alpha=0.35 if len(lines) > 1 else 1.0, lw=1,
                    label=name if k == 0 else None)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(1 - specificity, sensitivity) of every operating point (evaluation/metrics.py), left to right."""
    from evaluation.metrics import roc_points as points

    table = points(labels, scores).iloc[::-1]
    return 1 - table["specificity"].to_numpy(), table["sensitivity"].to_numpy()


def single_class_note(labels) -> str | None:
    """A plain statement when AUC is undefined on a set (one class only), else None."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return "no scans"
    if (labels > 0).all():
        return f"AUC undefined: only positives (n={len(labels)})"
    if (labels == 0).all():
        return f"AUC undefined: only negatives (n={len(labels)})"
    return None


def markdown_table(frame: pd.DataFrame) -> str:
    cells = frame.astype(str)
    lines = ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.to_numpy()]
    return "\n".join(lines)


def write_report(path, title: str, sections: list[tuple[str, str]]) -> Path:
    text = f"# {title}\n\n" + "\n\n".join(f"## {name}\n\n{body}" for name, body in sections) + "\n"
    write_text(path, text)
    return Path(path)


# ------------------------------------------------------------------------------------- formatting helpers
def _number(value, decimals: int = 3, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def _auc_cell(row) -> str:
    if pd.isna(row["auc"]):
        return row["note"] or "undefined"
    interval = "" if pd.isna(row["ci_low"]) else f" [{row['ci_low']:.3f}-{row['ci_high']:.3f}]"
    return f"{row['auc']:.3f}{interval}"


def _undefined_reason(labels) -> str:
    return single_class_note(labels) or "undefined"


def _site_parts(frame: pd.DataFrame):
    """(site, rows) for every site, then ("pooled", all rows)."""
    from evaluation.sites import POOLED

    return [(site, part) for site, part in frame.groupby("site", sort=True)] + [(POOLED, frame)]


# --------------------------------------------------------------------------------------- one run's test
def write_test_summary(predictions: pd.DataFrame, out, baseline: pd.DataFrame | None = None,
                       threshold=None) -> str:
    """summary.md and summary.csv of one run's predictions: AUC with DeLong CI per site and pooled,
    sensitivity/specificity at the validation threshold, grade agreement, and the H/CL baseline when given.

    Raises :class:`BadInputError` (after writing) when no AUC at all is defined: the test sets hold one class.
    """
    from evaluation import metrics

    out = Path(out)
    rows, lines = [], []
    task, arm, seed = (predictions[c].iloc[0] for c in ("task", "arm", "seed"))
    for site, part in _site_parts(predictions):
        row = {"site": site, **metrics.auc_row(part["label"], part["score"])}
        if pd.isna(row["auc"]):
            row["note"] = _undefined_reason(part["label"])
        if threshold is not None:
            at = metrics.diagnostic_metrics(part["label"], part["score"], threshold)
            row["sensitivity"], row["specificity"] = at.sensitivity.estimate, at.specificity.estimate
            row["sensitivity_text"], row["specificity_text"] = at.sensitivity.summary(), at.specificity.summary()
        if "predicted_grade" in part.columns:
            row["grade_accuracy"] = metrics.accuracy(part["grade"], part["predicted_grade"]).summary()
            try:
                row["grade_kappa"] = metrics.cohen_kappa(part["grade"], part["predicted_grade"], "linear").summary()
            except BadInputError as error:  # one class everywhere: say why
                row["grade_kappa"] = str(error)
        if baseline is not None:
            row.update(_baseline_cells(part, baseline))
        rows.append(row)
    table = pd.DataFrame(rows)
    with atomic_path(out / "summary.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    columns = {"site": table["site"],
               "n (pos/neg)": [f"{r.n} ({r.n_positive}/{r.n_negative})" for r in table.itertuples()],
               "AUC [95% CI, DeLong]": [_auc_cell(r) for _, r in table.iterrows()]}
    if threshold is not None:
        columns["sensitivity"] = table["sensitivity_text"]
        columns["specificity"] = table["specificity_text"]
    if "grade_accuracy" in table.columns:
        columns["grade accuracy"], columns["grade kappa (linear)"] = table["grade_accuracy"], table["grade_kappa"]
    if baseline is not None:
        columns["H/CL AUC [95% CI]"] = table["hcl_auc"]
        columns["network vs H/CL (DeLong)"] = table["hcl_delong"]
    seed_text = "" if pd.isna(seed) else f", seed {seed}"
    lines.append(f"Task **{task}**, arm **{arm}**{seed_text}; {len(predictions)} test scans at "
                 f"{predictions['site'].nunique()} site(s).")
    if threshold is not None:
        lines.append(f"Operating point fixed on the validation set: {threshold.summary()}.")
    lines.append(markdown_table(pd.DataFrame(columns)))
    text = "\n\n".join(lines)
    write_report(out / "summary.md", f"Test results: {task}", [("Per site", text)])
    if table["auc"].isna().all():
        raise BadInputError("no AUC is defined on these test sets: " + "; ".join(
            f"{r.site}: {r.note}" for r in table.itertuples() if r.site != "pooled") + f" (predictions in {out})")
    return text


def _baseline_cells(part: pd.DataFrame, baseline: pd.DataFrame) -> dict:
    from evaluation import metrics

    scores = baseline.set_index("study_id")["score"].reindex(part["study_id"])
    if scores.isna().any():
        return {"hcl_auc": "not measured on these scans", "hcl_delong": "-"}
    row = metrics.auc_row(part["label"], scores)
    cell = _auc_cell({**row, "note": row["note"] and _undefined_reason(part["label"])})
    try:
        test = metrics.delong_test(part["label"], scores, part["score"])
        delong = f"{test.estimate:+.3f} [{test.ci_low:+.3f} to {test.ci_high:+.3f}], {metrics.p_text(test.p_value)}"
    except BadInputError:
        delong = "-"
    return {"hcl_auc": cell, "hcl_delong": delong}


# ------------------------------------------------------------------------------------ two arms by seed
def compare_arms(patterns_a, patterns_b, out, baseline=None, name_a: str | None = None,
                 name_b: str | None = None) -> Path:
    """The comparison report of arm B against arm A (runs paired by seed); returns the path of compare.md."""
    from evaluation import metrics, sites

    runs_a, runs_b = read_arm(patterns_a, "A"), read_arm(patterns_b, "B")
    seeds = pair_by_seed(runs_a, runs_b)
    name_a, name_b = _arm_names(runs_a, runs_b, name_a, name_b)
    predictions = pd.concat([frame.assign(arm=name) for name, runs in ((name_a, runs_a), (name_b, runs_b))
                             for seed, frame in runs.items() if seed in seeds], ignore_index=True)
    task = str(predictions["task"].iloc[0])
    hcl = read_baseline(baseline)
    matrix = sites.site_matrix(predictions)
    comparison = sites.compare_arms(predictions, name_a, name_b)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"site_matrix": matrix, "gains": comparison.per_pair, "gains_by_site": comparison.per_site}
    for name, table in tables.items():
        with atomic_path(out / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")

    figures = []
    for site, part in _site_parts(predictions[predictions["arm"] == name_a]):
        curves = {}
        for arm in (name_a, name_b):
            rows = predictions[(predictions["arm"] == arm) & ((predictions["site"] == site) | (site == sites.POOLED))]
            if single_class_note(rows["label"]) is None:
                curves[arm] = [roc_points(r["label"], r["score"]) for _, r in rows.groupby("seed")]
        if hcl is not None:
            scans = hcl[hcl["study_id"].isin(part["study_id"])]
            if single_class_note(scans["label"]) is None:
                curves["H/CL ratio"] = [roc_points(scans["label"], scans["score"])]
        if curves:
            roc_figure(curves, f"{task}: {site}", out / f"roc_{site}.png")
            figures.append((f"ROC curves, {site}", f"roc_{site}.png"))
    gain_figure(comparison.per_pair, name_a, name_b, out / "gains.png")
    figures.append(("Relative AUC gain per site (dots: seeds; bars: mean ± SD)", "gains.png"))

    unpaired = sorted((set(runs_a) | set(runs_b)) - set(seeds))
    header = [f"Task **{task}**. Arm A: **{name_a}** ({len(runs_a)} run(s)); arm B: **{name_b}** ({len(runs_b)} "
              f"run(s)). Paired by seed: seeds {', '.join(map(str, seeds))}."
              + (f" Unpaired seeds left out: {', '.join(map(str, unpaired))}." if unpaired else ""),
              comparison.summary() + "."]
    matrix_text = sites.site_matrix_markdown(matrix)
    if hcl is not None:
        matrix_text += "\n\n" + _baseline_table(hcl, predictions[predictions["arm"] == name_a])
    sections = [
        ("Summary", "\n\n".join(header)),
        ("Site matrix (AUC, DeLong 95% CI; mean ± SD over seeds)", matrix_text),
        ("Gain of B over A per site", _per_site_table(comparison.per_site)),
        ("Per seed and site: DeLong's paired test (Holm-adjusted over all pairs)",
         _per_pair_table(comparison.per_pair)),
        ("Figures", "\n\n".join(f"![{title}]({name})" for title, name in figures)),
        ("Methods", METHODS.format(level="95%", n_pairs=comparison.n_pairs, p=metrics.p_text(comparison.p_value))),
    ]
    return write_report(out / "compare.md", f"{name_b} vs {name_a}: {task}", sections)


METHODS = (
    "AUCs are the Mann-Whitney estimate with DeLong's {level} CI (evaluation/metrics.py). Runs of the two arms "
    "trained with the same seed are paired; for every seed and site the gain is AUC_B - AUC_A (absolute) and "
    "(AUC_B - AUC_A) / AUC_A (relative). Across the {n_pairs} seed x site pairs the absolute gains are tested "
    "with the two-sided Wilcoxon signed-rank test ({p}); per seed and site, DeLong's test for two correlated AUCs "
    "on the same scans, Holm-adjusted over all pairs. Per-site Wilcoxon p-values are Holm-adjusted over sites. "
    "Sites where a test set holds one class have no AUC; they are named, not counted.")


def _arm_names(runs_a, runs_b, name_a, name_b) -> tuple[str, str]:
    def found(runs):
        arms = sorted({str(a) for frame in runs.values() for a in frame["arm"].unique()})
        return arms[0] if len(arms) == 1 else "+".join(arms)

    name_a, name_b = name_a or found(runs_a), name_b or found(runs_b)
    if name_a == name_b:
        name_a, name_b = f"{name_a} (A)", f"{name_b} (B)"
    return name_a, name_b


def _per_site_table(per_site: pd.DataFrame) -> str:
    from evaluation.metrics import format_p

    rows = [{"site": r["site"], "seeds": r["n_seeds"], "AUC A": _number(r["auc_a"]), "AUC B": _number(r["auc_b"]),
             "gain (AUC points)": f"{_number(r['gain'], signed=True)} ± {_number(r['gain_sd'])}",
             "relative gain": _percent_pm(r["relative_gain"], r["relative_gain_sd"]),
             "Wilcoxon p (Holm)": format_p(r["wilcoxon_p_holm"]),
             "seeds with DeLong p < 0.05 (Holm)": r["delong_significant"]} for _, r in per_site.iterrows()]
    return markdown_table(pd.DataFrame(rows))


def _percent_pm(mean, sd) -> str:
    if pd.isna(mean):
        return "-"
    return f"{100 * mean:+.1f}% ± " + ("-" if pd.isna(sd) else f"{100 * sd:.1f}%")


def _per_pair_table(per_pair: pd.DataFrame) -> str:
    from evaluation.metrics import format_p

    rows = [{"seed": r["seed"], "site": r["site"], "AUC A": _number(r["auc_a"]), "AUC B": _number(r["auc_b"]),
             "gain": _number(r["gain"], signed=True),
             "95% CI (DeLong)": "-" if pd.isna(r["delong_low"]) else
             f"{r['delong_low']:+.3f} to {r['delong_high']:+.3f}",
             "p": format_p(r["delong_p"]), "p (Holm)": format_p(r["delong_p_holm"]), "note": r["note"] or ""}
            for _, r in per_pair.iterrows()]
    return markdown_table(pd.DataFrame(rows))


def _baseline_table(hcl: pd.DataFrame, reference: pd.DataFrame) -> str:
    from evaluation import metrics

    scans = hcl[hcl["study_id"].isin(reference["study_id"])].copy()
    rows = []
    for site, part in _site_parts(scans):
        row = metrics.auc_row(part["label"], part["score"])
        rows.append({"site": site, "H/CL ratio AUC [95% CI]": _auc_cell({**row, "note": _undefined_reason(part["label"])
                                                                        if pd.isna(row["auc"]) else ""})})
    return "Classical baseline, heart-to-contralateral ratio (anterior view):\n\n" + markdown_table(pd.DataFrame(rows))


def gain_figure(per_pair: pd.DataFrame, name_a: str, name_b: str, path) -> None:
    plt = _pyplot()
    usable = per_pair[per_pair["relative_gain"].notna()]
    site_names = sorted(usable["site"].unique())
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(site_names) + 2), 3.6))
    for x, site in enumerate(site_names):
        values = 100 * usable.loc[usable["site"] == site, "relative_gain"].to_numpy(float)
        sd = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.bar(x, values.mean(), yerr=sd, color="C0", alpha=0.5, capsize=4)
        ax.scatter(np.full(len(values), x) + np.linspace(-0.15, 0.15, len(values)), values, color="C0", s=12)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xticks(range(len(site_names)), site_names, rotation=20)
    ax.set_ylabel(f"relative AUC gain (%)\n{name_b} vs {name_a}")
    fig.tight_layout()
    _savefig(fig, path)
