"""audit.md: the memorization audit's verdict in words, then the tables behind it (from the audit.json numbers)."""

from __future__ import annotations

METHOD = (
    "Distances: pixel space = 1 - normalised cross-correlation of sqrt counts after registration to the top of "
    "the body at physical scale, lateral centring and a search over small translations; feature space = 1 - "
    "cosine similarity of features centred on the training mean. d1/d2: nearest over second-nearest training "
    "scan of another patient (Gu et al. 2023 call d1/d2 < 1/3 memorized). Each near-copy rule flags values "
    "below the k-th smallest real-vs-real value; its p-value is exact under exchangeability (beta-binomial). "
    "The data-copying test is a one-sided Mann-Whitney test of synthetic-to-train vs real-to-train distances "
    "(Meehan et al. 2020). Membership AUCs have percentile-bootstrap CIs and one-sided Mann-Whitney p-values "
    "(AUC > 0.5). Attacks: distance of each real scan to its nearest synthetic scan, and with a generator, its "
    "denoising loss (Carlini et al. 2023) and autoencoder reconstruction error. Identifiers in this report are "
    "the manifests' pseudonymous study ids only.")


def _verdict(result: dict) -> list[str]:
    near = result["near_copies"]
    significant = {t["test"]: t["significant"] for t in result["tests"]}
    alpha = result["settings"]["alpha_per_test"]
    lines = [f"Memorization detected: **{'yes' if result['memorization_detected'] else 'no'}** "
             f"({len(result['tests'])} tests, each at alpha {alpha:.3g}: 0.05 Bonferroni-corrected).", "",
             f"- Near-copies: {near['flagged']} of {near['n']} synthetic scans are flagged as closer to a training "
             f"scan than real patients come to one; at most about {near['expected_rate_at_most'] * near['n']:.1f} "
             "are expected by chance without memorization. Look at every flagged pair below."]
    for rule in result["rules"]:
        lines.append(f"  - {rule['summary']}" +
                     (" **(more than chance)**" if significant[f"near-copies ({rule['rule']})"] else ""))
    for space, info in result["spaces"].items():
        copying = info["data_copying_test"]
        lines.append(f"- Data-copying test, {space}: synthetic scans are closer to their nearest training scan than "
                     f"real scans are with probability {copying['probability_synthetic_closer']:.2f} (0.5 = like "
                     f"new patients), p = {copying['p_value']:.2g}" +
                     (" **(copying)**" if significant[f"data-copying ({space})"] else ""))
    if not result["membership"]:
        lines.append("- Membership inference: not tested (needs --holdout).")
    for item in result["membership"]:
        lines.append(f"- Membership inference, {item['summary']}" +
                     (": **training scans can be told from held-out scans**"
                      if significant[f"membership {item['attack']}"] else ": no evidence of better than chance"))
    return lines + [""] + [f"> Note: {warning}." for warning in result["warnings"]]


def markdown(result: dict) -> str:
    """audit.md: the verdict first, then the tables behind it."""
    settings = result["settings"]
    lines = ["# Memorization audit", "", f"synthscan {result['synthscan_version']}, {result['created_utc']}", "",
             "## Verdict", "", *_verdict(result),
             "", "## Inputs", "", "| set | manifest | scans | patients |", "|---|---|---:|---:|"]
    for role, info in result["inputs"].items():
        if role != "model":
            lines.append(f"| {role} | `{info['manifest']}` | {info['n_scans']} | {info['n_patients']} |")
    if "model" in result["inputs"]:
        lines.append(f"\nGenerator: model hash `{result['inputs']['model']['hash']}`.")
    rows, cols = settings["grid"]
    lines += ["", "## Near-copy rules", "",
              f"Calibrated on {settings['calibration']}: a rule flags a synthetic scan whose value is below the "
              f"k-th smallest real-vs-real value (false-positive rate {settings['false_positive_rate']:g} in all, "
              f"{settings['false_positive_rate_per_rule']:.3g} per rule). Grid {rows}x{cols} per view, "
              f"translations of up to {max(abs(s[0]) for s in settings['shifts'])} rows and "
              f"{max(abs(s[1]) for s in settings['shifts'])} column(s).", "",
              "| rule | threshold | k of n real | flagged (95% CI) | expected | p |", "|---|---:|---:|---|---:|---:|"]
    for rule in result["rules"]:
        rate = rule["near_copies"]
        lines.append(f"| {rule['rule']} | {rule['threshold']:.4g} | {rule['order_statistic_k']} of "
                     f"{rule['n_reference']} | {rate['flagged']}/{rate['n']} ({100 * rate['ci_low']:.1f}-"
                     f"{100 * rate['ci_high']:.1f}%) | {100 * rate['expected_rate']:.2f}% | {rate['p_value']:.3g} |")
    lines += ["", "## Distances", "",
              "| space | median d1, synthetic | median d1, real | P(synthetic closer) | d1/d2 < 1/3 (synthetic; "
              "real) |", "|---|---:|---:|---:|---:|"]
    for info in result["spaces"].values():
        lines.append(f"| {info['description']} | {info['synthetic_to_train']['q50']:.4g} | "
                     f"{info['real_to_train']['q50']:.4g} | "
                     f"{info['data_copying_test']['probability_synthetic_closer']:.3f} | "
                     f"{info['ratio_below_one_third']}; {info['reference_ratio_below_one_third']} |")
    lines += ["", "![nearest-neighbour distances and ratios](distances.png)", "",
              "Every synthetic scan: `nearest_neighbours.csv`; the real-vs-real values: `reference_neighbours.csv`.",
              ""]
    if result.get("flagged_pairs"):
        lines += ["## Flagged pairs (most clearly flagged first)", ""]
        lines += [f"- `{p['study_id']}` vs training `{p['train_study_id']}` ({p['rule']}): [{p['file']}]({p['file']})"
                  for p in result["flagged_pairs"]]
        lines.append("")
    return "\n".join(lines + ["## Method", "", METHOD, ""])
