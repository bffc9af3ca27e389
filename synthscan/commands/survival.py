"""``synthscan survival``: Kaplan-Meier, log-rank and Cox of predicted-abnormal vs predicted-normal studies."""

from __future__ import annotations


def register(subparsers):
    parser = subparsers.add_parser(
        "survival", help="survival of predicted-abnormal vs normal studies: KM, log-rank, Cox (report + figure)",
        description="Join a classifier's predictions.csv to an outcomes manifest (time_days, event, age_years, "
                    "site) on study_id and compare predicted-abnormal with predicted-normal studies.")
    parser.add_argument("--predictions", required=True, help="predictions.csv (study_id, site, task, label, "
                        "score, seed, arm)")
    parser.add_argument("--outcomes", required=True, help="manifest with study_id, time_days, event (0/1), "
                        "age_years, site")
    parser.add_argument("--out", required=True, help="report folder (survival.md, survival.json, km.png)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="predicted abnormal = score >= this (default: the predictions' 'threshold' "
                             "column, else 0.5 for probabilities)")
    parser.add_argument("--task", help="task to analyse when the predictions hold several")
    parser.add_argument("--arm", help="arm to analyse when the predictions hold several")
    parser.add_argument("--seed", type=int, default=None,
                        help="one training seed (default: the mean score across all seeds)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from evaluation.survival import SurvivalAnalysis, p_text
    from evaluation.survival_cohort import load_cohort
    from evaluation.survival_report import write_report

    cohort = load_cohort(args.predictions, args.outcomes, task=args.task, arm=args.arm, seed=args.seed,
                         threshold=args.threshold)
    analysis = SurvivalAnalysis().fit(cohort.frame)
    out = write_report(analysis, cohort, args.out)
    print(cohort.summary())
    hr = analysis.cox_univariable_["predicted_abnormal"]
    print(f"log-rank {p_text(analysis.logrank_.p_value)}; Cox HR {hr.estimate:.2f} "
          f"(95% CI {hr.ci_low:.2f}-{hr.ci_high:.2f})")
    print(f"wrote {out}/survival.md, survival.json, km.png")
    return 0
