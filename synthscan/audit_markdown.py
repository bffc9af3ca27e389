"""audit.md: the memorization audit's verdict in words, then the tables behind it (from the audit.json numbers)."""

from __future__ import annotations


def markdown(result: dict) -> str:
    """audit.md: the verdict first, then the tables behind it."""
    near, spaces = result["near_copies"], result["spaces"]
    lines = ["# Memorization audit", "", f"synthscan {result['synthscan_version']}, {result['created_utc']}", "",
             "## Verdict", ""]
    expected = near["expected_rate_at_most"] * near["n"]
    significant = {t["test"]: t["significant"] for t in result["tests"]}
    alpha = result["settings"]["alpha_per_test"]
    lines.append(f"Memorization detected: **{'yes' if result['memorization_detected'] else 'no'}** "
                 f"({len(result['tests'])} tests, each at alpha {alpha:.3g}: 0.05 Bonferroni-corrected).")
    lines.append("")
    lines.append(f"- Near-copies: {near['flagged']} of {near['n']} synthetic scans are flagged as closer to a "
                 f"training scan than real patients come to one; about {expected:.1f} are expected by chance "
                 "without memorization. Look at every flagged pair below.")
    for space, info in spaces.items():
        rate, copying = info["near_copies"], info["data_copying_test"]
        lines.append(f"  - {info['summary']}" + (" **(more than chance)**" if
                                                          significant[f"near-copies ({space})"] else ""))
        lines.append(f"  - {space}, data-copying test: synthetic scans are closer to their nearest training scan "
                     f"than held-out real scans are with probability {copying['probability_synthetic_closer']:.2f} "
                     f"(0.5 = like new patients), p = {copying['p_value']:.2g}" +
                     (" **(copying)**" if significant[f"data-copying ({space})"] else ""))
    if not result["membership"]:
        lines.append("- Membership inference: not tested (needs --holdout).")
    for item in result["membership"]:
        leak = significant[f"membership {item['attack']}"]
        lines.append(f"- Membership inference, {item['summary']}" +
                     (": **training scans can be told from held-out scans**" if leak else
                      ": no evidence of better than chance"))
    lines.append("")
    for warning in result["warnings"]:
        lines.append(f"> Note: {warning}.")
    lines += ["", "## Inputs", "", "| set | manifest | scans | patients |", "|---|---|---:|---:|"]
    for role, info in result["inputs"].items():
        if role != "model":
            lines.append(f"| {role} | `{info['manifest']}` | {info['n_scans']} | {info['n_patients']} |")
    if "model" in result["inputs"]:
        lines.append(f"\nGenerator: model hash `{result['inputs']['model']['hash']}`.")
    settings = result["settings"]
    lines += ["", "## Nearest training scans", "",
              f"Thresholds are calibrated on {settings['calibration']}: a synthetic scan is flagged when it is "
              f"closer to a training scan than the k-th closest real pair (false-positive rate "
              f"{settings['false_positive_rate']:g} in all, split over {len(spaces)} space(s)). Grid "
              f"{settings['grid'][0]}x{settings['grid'][1]} per view, translations of up to "
              f"{max(abs(s[0]) for s in settings['shifts'])} rows and {max(abs(s[1]) for s in settings['shifts'])} "
              "column(s).", "",
              "| space | threshold | flagged (95% CI) | expected | p | median NN distance, synthetic | "
              "median, real | P(synthetic closer) | d1/d2 < 1/3 (synthetic; real) |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for space, info in spaces.items():
        rate = info["near_copies"]
        lines.append(
            f"| {info['description']} | {info['threshold']:.4g} | {rate['flagged']}/{rate['n']} "
            f"({100 * rate['ci_low']:.1f}-{100 * rate['ci_high']:.1f}%) | {100 * rate['expected_rate']:.2f}% | "
            f"{rate['p_value']:.3g} | {info['synthetic_to_train']['q50']:.4g} | {info['real_to_train']['q50']:.4g} | "
            f"{info['data_copying_test']['probability_synthetic_closer']:.3f} | {info['ratio_below_one_third']}; "
            f"{info['reference_ratio_below_one_third']} |")
    lines += ["", "![nearest-neighbour distances](distances.png)", "",
              "Every synthetic scan: `nearest_neighbours.csv`; the real-vs-real distances: "
              "`reference_neighbours.csv`.", ""]
    if result.get("flagged_pairs"):
        lines += ["## Flagged pairs (closest first)", ""]
        lines += [f"- `{p['study_id']}` vs training `{p['train_study_id']}` ({p['space']}): "
                  f"[{p['file']}]({p['file']})" for p in result["flagged_pairs"]]
        lines.append("")
    lines += ["## Method", "",
              "Distances: pixel space = 1 - normalised cross-correlation of sqrt counts after body-extent "
              "registration along the body axis, lateral centring and a search over small translations; feature "
              "space = 1 - cosine similarity of features centred on the training mean. d1/d2: nearest over "
              "second-nearest training scan of another patient (Gu et al. 2023 call d1/d2 < 1/3 memorized). "
              "Near-copy p-values are exact under exchangeability (beta-binomial); the data-copying test is a "
              "one-sided Mann-Whitney test of synthetic-to-train vs real-to-train distances (Meehan et al. 2020); "
              "membership AUCs have "
              "percentile-bootstrap CIs and one-sided Mann-Whitney p-values (AUC > 0.5). Attacks: distance of "
              "each real scan to its nearest synthetic scan, and with a generator, its denoising loss (Carlini "
              "et al. 2023) and autoencoder reconstruction error. Identifiers in this report are the manifests' "
              "pseudonymous study ids only.", ""]
    return "\n".join(lines)
