"""The reader-study report: Markdown, JSON and figures, with the published study's figures beside ours.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from reader_study.responses import DIAGNOSES
from reader_study.scoring import StudyResult, min_fleiss_kappa, wilson_interval
from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_dir

# Haberl et al., "Generative AI enables the generation of bone scintigraphy images ...", EJNMMI 2025.
PAPER = {"reference": "Haberl et al., EJNMMI 2025 (doi 10.1007/s00259-025-07091-8)", "readers": 4, "cases": 400,
         "accuracy": 0.48, "accuracy_ci": (0.46, 0.51), "disagreements": 239, "fleiss_kappa": 0.18}
RESULT_FILES = ("report.md", "results.json", "reads.csv", "accuracy.png", "agreement.png", "diagnosis.png",
                "quality.png")


@contextlib.contextmanager
def _results_folder(out: Path):
    """A fresh folder that replaces ``out`` only when everything was written; never clobbers other folders."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "results.json").is_file()):
            raise BadInputError("exists and is not a reader-study results folder; refusing to replace it", out)
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    with atomic_dir(staging) as folder:
        yield folder
    if out.exists():
        retired = out.with_name(f".{out.name}.retired")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(out, retired)
        os.replace(staging, out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, out)


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)
    return figure


def accuracy_figure(result: StudyResult, path) -> None:
    rows = [(a.label, a.estimate, (a.ci_low, a.ci_high), (a.wilson_low, a.wilson_high), "C0")
            for a in result.per_reader]
    pooled = result.pooled
    rows.append(("pooled (this study)", pooled.estimate, (pooled.ci_low, pooled.ci_high),
                 (pooled.wilson_low, pooled.wilson_high), "C3"))
    rows.append((f"pooled ({PAPER['readers']} readers x {PAPER['cases']}, paper)", PAPER["accuracy"], None,
                 PAPER["accuracy_ci"], "0.4"))
    figure = _figure(7.2, 0.42 * len(rows) + 1.4)
    axes = figure.add_subplot()
    for y, (label, estimate, boot, wilson, colour) in enumerate(reversed(rows)):
        axes.plot(wilson, [y, y], color=colour, lw=1.2)
        if boot is not None:
            axes.plot(boot, [y, y], color=colour, lw=4, alpha=0.45, solid_capstyle="butt")
        axes.plot([estimate], [y], "o", color=colour)
    axes.axvline(0.5, color="k", ls="--", lw=0.8)
    axes.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
    axes.set_xlim(0, 1)
    axes.set_xlabel("accuracy at telling real from synthetic (0.5 = chance)")
    axes.set_title("real vs synthetic accuracy; thin line: Wilson 95% CI, thick bar: reader/case bootstrap",
                   fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def agreement_figure(result: StudyResult, path) -> None:
    figure = _figure(10, 3.4)
    left, middle, right = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.2]})
    fleiss = result.fleiss
    if np.isfinite([fleiss.estimate, fleiss.ci_low, fleiss.ci_high]).all():
        left.bar([0], [fleiss.estimate], color="C0", capsize=4,
                 yerr=[[fleiss.estimate - fleiss.ci_low], [fleiss.ci_high - fleiss.estimate]])
    left.bar([1], [PAPER["fleiss_kappa"]], color="0.6")
    left.set_xticks([0, 1], ["this study", "paper"])
    left.set_title("Fleiss' kappa (case bootstrap CI)", fontsize=9)
    left.axhline(0, color="k", lw=0.6)
    ours = result.disagreements / result.n_cases
    ours_ci = wilson_interval(result.disagreements, result.n_cases)
    paper = PAPER["disagreements"] / PAPER["cases"]
    paper_ci = wilson_interval(PAPER["disagreements"], PAPER["cases"])
    for x, value, ci, colour in ((0, ours, ours_ci, "C0"), (1, paper, paper_ci, "0.6")):
        middle.bar([x], [value], color=colour, yerr=[[value - ci[0]], [ci[1] - value]], capsize=4)
    middle.set_xticks([0, 1], [f"this study\n{result.disagreements}/{result.n_cases}",
                               f"paper\n{PAPER['disagreements']}/{PAPER['cases']}"])
    middle.set_ylim(0, 1)
    middle.set_title("cases with disagreement (Wilson CI)", fontsize=9)
    names = [a.label for a in result.per_reader]
    matrix = np.full((len(names), len(names)), np.nan)
    for pair in result.cohen:
        i, j = names.index(pair.reader_a), names.index(pair.reader_b)
        matrix[i, j] = matrix[j, i] = pair.estimate
    image = right.imshow(np.ma.masked_invalid(matrix), vmin=-1, vmax=1, cmap="RdBu_r")
    right.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    right.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j:
                right.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
    right.set_title("pairwise Cohen's kappa", fontsize=9)
    figure.colorbar(image, ax=right, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path)


def diagnosis_figure(result: StudyResult, path) -> None:
    figure = _figure(8, 3.6)
    for axes, title, confusion in zip(figure.subplots(1, 2), ("real cases", "synthetic cases (intended condition)"),
                                      (result.confusion_real, result.confusion_synthetic)):
        matrix = np.asarray(confusion)
        axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(matrix.max(), 1))
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                dark = matrix[i, j] > 0.6 * matrix.max()
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9,
                          color="white" if dark else "black")
        axes.set_xticks(range(len(DIAGNOSES)), DIAGNOSES, fontsize=8)
        axes.set_yticks(range(len(DIAGNOSES)), DIAGNOSES, fontsize=8)
        axes.set_xlabel("reader's diagnosis")
        axes.set_ylabel("truth")
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)


def quality_figure(result: StudyResult, path) -> None:
    figure = _figure(6, 3.4)
    axes = figure.add_subplot()
    levels = np.arange(1, 6)
    for offset, counts, label, colour in ((-0.2, result.quality_counts_real, "real", "C0"),
                                          (0.2, result.quality_counts_synthetic, "synthetic", "C1")):
        counts = np.asarray(counts, float)
        axes.bar(levels + offset, counts / max(counts.sum(), 1), width=0.4, label=label, color=colour)
    axes.set_xticks(levels)
    axes.set_xlabel("image quality (1 non-diagnostic - 5 excellent)")
    axes.set_ylabel("fraction of reads")
    quality = result.quality
    axes.set_title(f"quality: synthetic {quality.synthetic:.2f} vs real {quality.real:.2f}, "
                   f"Mann-Whitney p = {quality.p_value:.2g}", fontsize=9)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def paper_consistency() -> str:
    """How the paper's disagreement count and kappa constrain each other (see ``min_fleiss_kappa``)."""
    from scipy.optimize import brentq

    cases, readers = PAPER["cases"], PAPER["readers"]
    unanimous = cases - PAPER["disagreements"]
    balanced = min_fleiss_kappa(unanimous, cases, readers, 0.5)
    note = (f"Note on the paper's figures: with {readers} readers, {unanimous}/{cases} unanimous cases imply "
            f"Fleiss' kappa >= {balanced:.2f} when the two calls are equally frequent")
    if balanced > PAPER["fleiss_kappa"]:
        split = brentq(lambda p: min_fleiss_kappa(unanimous, cases, readers, p) - PAPER["fleiss_kappa"], 0.5, 0.999)
        note += (f"; kappa = {PAPER['fleiss_kappa']:.2f} needs calls split at least {split:.0%}/{1 - split:.0%} "
                 f"and nearly every disagreement an even split, so one of the published figures may be defined "
                 f"differently from the usual ones computed here")
    return note + "."


def _ci(low, high, digits=2) -> str:
    return "-" if not (np.isfinite(low) and np.isfinite(high)) else f"{low:.{digits}f}-{high:.{digits}f}"


def markdown(result: StudyResult, key_path: str, study_id: str, simulated: bool) -> str:
    pooled, fleiss = result.pooled, result.fleiss
    lines = [f"# Reader study {study_id}: real vs synthetic bone scans", ""]
    if simulated:
        lines += ["> **These responses are SIMULATED** (`synthscan reader-study simulate`): a dry run, not a "
                  "reader study.", ""]
    lines += [f"{result.n_readers} readers read {result.n_cases} cases ({result.n_synthetic_cases} synthetic, "
              f"{result.n_cases - result.n_synthetic_cases} real); key `{key_path}`. 95% intervals; bootstrap "
              f"with {result.n_boot} replicates, seed {result.seed}.", "",
              "## This study beside the paper", "",
              f"| | paper ({PAPER['reference']}) | this study |", "|---|---|---|",
              f"| readers x cases | {PAPER['readers']} x {PAPER['cases']} | {result.n_readers} x {result.n_cases} |",
              f"| accuracy, real vs synthetic | {PAPER['accuracy']:.2f} [{_ci(*PAPER['accuracy_ci'])}] | "
              f"{pooled.estimate:.2f} [Wilson {_ci(pooled.wilson_low, pooled.wilson_high)}; reader/case bootstrap "
              f"{_ci(pooled.ci_low, pooled.ci_high)}] |",
              f"| cases with disagreement | {PAPER['disagreements']}/{PAPER['cases']} "
              f"({PAPER['disagreements'] / PAPER['cases']:.0%}) | {result.disagreements}/{result.n_cases} "
              f"({result.disagreements / result.n_cases:.0%}) |",
              f"| Fleiss' kappa | {PAPER['fleiss_kappa']:.2f} | {fleiss.estimate:.2f} [case bootstrap "
              f"{_ci(fleiss.ci_low, fleiss.ci_high)}] |", "",
              paper_consistency(), "",
              "![accuracy](accuracy.png)", "", "## Readers", "",
              "| reader | accuracy | Wilson 95% CI | case bootstrap 95% CI | called synthetic |", "|---|---|---|---|---|"]
    for accuracy, called in zip(result.per_reader, result.called_synthetic):
        lines.append(f"| {accuracy.label} | {accuracy.estimate:.3f} ({accuracy.successes}/{accuracy.n}) | "
                     f"{_ci(accuracy.wilson_low, accuracy.wilson_high, 3)} | {_ci(accuracy.ci_low, accuracy.ci_high, 3)}"
                     f" | {called:.2f} |")
    lines += ["", f"- {result.synthetic_detected.summary()}", f"- {result.real_recognized.summary()}", "",
              "## Agreement", "",
              f"- {fleiss.summary()}",
              "  - The **confidence interval** is a percentile bootstrap over cases (readers fixed). The **standard "
              "error** is Fleiss, Nee & Landis (1979)'s asymptotic SE under the null hypothesis kappa = 0 (as in R "
              "`irr::kappam.fleiss`); it only serves the z test of agreement beyond chance.",
              f"- cases on which the readers did not all give the same call: {result.disagreements}/{result.n_cases}",
              "", "| readers | Cohen's kappa | observed agreement |", "|---|---|---|"]
    lines += [f"| {k.reader_a} vs {k.reader_b} | {k.estimate:.3f} | {k.agreement:.3f} |" for k in result.cohen]
    lines += ["", "![agreement](agreement.png)", "", "## Diagnosis: do readers see the intended condition?", "",
              f"- {result.diagnosis_real.summary()}", f"- {result.diagnosis_synthetic.summary()}",
              f"- {result.diagnosis_difference.summary()}", f"- {result.diagnosis_fleiss.summary()}",
              f"- {result.grade_real.summary()}", f"- {result.grade_synthetic.summary()}", "",
              "![diagnosis](diagnosis.png)", "", "## Image quality and confidence", "",
              f"- {result.quality.summary()}", f"- {result.confidence.summary()}",
              "- Mann-Whitney U treats reads as independent; the bootstrap interval of the mean difference "
              "resamples readers and cases.", "", "![quality](quality.png)", "",
              "## Methods", "",
              "Accuracy: Wilson score interval on all reads (as reader studies usually report it) and a two-way "
              "percentile bootstrap resampling readers and cases (cases within real and within synthetic), which "
              "accounts for reads of one case or by one reader being correlated. Fleiss' kappa (Fleiss 1971) on the "
              "real/synthetic calls, identical to statsmodels' `fleiss_kappa`; Cohen's kappa per reader pair. "
              "Diagnostic accuracy compares the reader's diagnosis with the label of real scans and with the "
              "condition a synthetic scan was generated for.", ""]
    return "\n".join(lines)


def write_report(result: StudyResult, reads: pd.DataFrame, key, out) -> Path:
    """Write report.md, results.json, reads.csv and figures into ``out`` (replaced only on success)."""
    out = Path(out)
    simulated = bool(reads.get("simulated", pd.Series(dtype=bool)).any())
    with _results_folder(out) as folder:
        accuracy_figure(result, folder / "accuracy.png")
        agreement_figure(result, folder / "agreement.png")
        diagnosis_figure(result, folder / "diagnosis.png")
        quality_figure(result, folder / "quality.png")
        document = {"study_id": key.study_id, "key": str(key.path), "simulated": simulated, "paper": PAPER,
                    **result.to_dict()}
        (folder / "results.json").write_text(json.dumps(document, indent=1) + "\n")
        reads.to_csv(folder / "reads.csv", index=False)
        (folder / "report.md").write_text(markdown(result, str(key.path), key.study_id, simulated))
    return out


def score_study(key_path, responses, out, n_boot: int = 2000, seed: int = 0,
                passphrase: str | None = None) -> StudyResult:
    """Read the key and every response file (all checked before anything is written), score, write the report."""
    from reader_study.key import read_key
    from reader_study.responses import read_responses, response_paths
    from reader_study.scoring import ReadMatrix, score

    key = read_key(key_path, passphrase)
    reads = read_responses(response_paths(responses), key)
    result = score(ReadMatrix.from_frame(reads), n_boot=n_boot, seed=seed)
    write_report(result, reads, key, out)
    return result
