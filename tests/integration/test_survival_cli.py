"""``synthscan survival`` end to end on a small planted cohort in a temp dir."""

import json

import numpy as np
import pandas as pd
import pytest

from synthscan.cli import main


def write_inputs(folder, n=150, seeds=(0, 1)):
    """Outcomes with a planted hazard ratio of 2 for high scores; predictions from two seeds."""
    rng = np.random.default_rng(20261123)
    score = rng.random(n)
    abnormal = (score >= 0.5).astype(int)
    event_time = rng.exponential(600 / 2.0 ** abnormal)
    censor_time = rng.uniform(100, 1500, n)
    ids = [f"st-{i:04d}" for i in range(n)]
    sites = np.where(np.arange(n) % 4 == 0, "linz", "wien")
    outcomes = pd.DataFrame({"study_id": ids, "patient_id": [f"pt-{i}" for i in range(n)], "site": sites,
                             "age_years": rng.normal(64, 9, n).round(1),
                             "time_days": np.ceil(np.minimum(event_time, censor_time)).astype(int),
                             "event": (event_time <= censor_time).astype(int)})
    predictions = pd.concat([pd.DataFrame({"study_id": ids, "site": sites, "task": "metastasis", "label": abnormal,
                                           "score": np.clip(score + 0.01 * seed, 0, 1), "seed": seed, "arm": "real"})
                             for seed in seeds])
    outcomes.to_csv(folder / "outcomes.csv", index=False)
    predictions.to_csv(folder / "predictions.csv", index=False)
    return folder / "predictions.csv", folder / "outcomes.csv"


def survival(predictions, outcomes, out, *extra):
    return main(["survival", "--predictions", str(predictions), "--outcomes", str(outcomes), "--out", str(out),
                 *extra])


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_survival_writes_report_json_and_figure(tmp_path, capsys):
    predictions, outcomes = write_inputs(tmp_path)
    out = tmp_path / "reports" / "surv"
    assert survival(predictions, outcomes, out, "--task", "metastasis") == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["km.png", "survival.json", "survival.md"]
    report = json.loads((out / "survival.json").read_text())
    assert report["cohort"]["n_matched"] == 150 and report["run"]["seeds"] == [0, 1]
    hr = report["cox"]["univariable"]["hazard_ratios"][0]
    assert hr["term"] == "predicted_abnormal" and hr["ci_low"] < 2.0 < hr["ci_high"]
    from evaluation.survival import SurvivalAnalysis
    from evaluation.survival_cohort import load_cohort
    direct = SurvivalAnalysis().fit(load_cohort(predictions, outcomes).frame)  # the CLI reports the library's numbers
    assert report["logrank"]["p_value"] == pytest.approx(direct.logrank_.p_value, rel=1e-12)
    assert hr["estimate"] == pytest.approx(direct.cox_univariable_["predicted_abnormal"].estimate, rel=1e-12)
    assert report["adjusted_for"] == ["age_years", "site"] and report["reference_site"] == "linz"
    markdown = (out / "survival.md").read_text()
    for model in report["cox"].values():  # every hazard ratio with its CI is in the Markdown
        for term in model["hazard_ratios"]:
            assert f"{term['estimate']:.2f} ({term['ci_low']:.2f}-{term['ci_high']:.2f})" in markdown
    assert "Log-rank test" in markdown and "![Kaplan-Meier" in markdown
    assert (out / "km.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert leftovers(out.parent) == []


def test_rerun_replaces_same_run_but_refuses_a_different_one(tmp_path, capsys):
    predictions, outcomes = write_inputs(tmp_path)
    out = tmp_path / "surv"
    assert survival(predictions, outcomes, out) == 0
    before = (out / "survival.json").read_text()
    assert survival(predictions, outcomes, out) == 0  # the same run: replaced by identical numbers
    assert (out / "survival.json").read_text() == before
    capsys.readouterr()
    assert survival(predictions, outcomes, out, "--seed", "1") == 2
    assert "different run" in capsys.readouterr().err
    assert (out / "survival.json").read_text() == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert survival(predictions, outcomes, tmp_path / "busy") == 2
    assert "no survival report" in capsys.readouterr().err
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.assign(study_id="other-" + o["study_id"]), "share no study ids"),
    (lambda o: o.assign(time_days=o["time_days"].where(o.index != 9, -3)), "column 'time_days', row 11: negative"),
    (lambda o: o.assign(time_days=o["time_days"].astype(object).where(o.index != 2, "")),
     "column 'time_days', row 4: empty"),
    (lambda o: o.assign(event=o["event"].where(o.index != 5, 2)), "column 'event', row 7: unknown value 2"),
    (lambda o: o.assign(event=o["event"].astype(object).where(o.index != 5, "yes")),
     "column 'event', row 7: 'yes' is not a number"),
])
def test_bad_outcomes_exit_2_without_a_report(tmp_path, capsys, edit, message):
    predictions, outcomes = write_inputs(tmp_path)
    edit(pd.read_csv(outcomes)).to_csv(outcomes, index=False)
    out = tmp_path / "surv"
    assert survival(predictions, outcomes, out) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and "outcomes.csv" in error
    assert not out.exists() and leftovers(tmp_path) == []


def test_several_arms_need_a_choice(tmp_path, capsys):
    predictions, outcomes = write_inputs(tmp_path)
    frame = pd.read_csv(predictions)
    pd.concat([frame, frame.assign(arm="mixed")]).to_csv(predictions, index=False)
    assert survival(predictions, outcomes, tmp_path / "surv") == 2
    assert "--arm" in capsys.readouterr().err
    assert survival(predictions, outcomes, tmp_path / "surv", "--arm", "mixed", "--seed", "0") == 0
    report = json.loads((tmp_path / "surv" / "survival.json").read_text())
    assert report["run"]["arm"] == "mixed" and report["run"]["seeds"] == [0]


def test_without_age_and_with_one_site_only_the_univariable_model_is_reported(tmp_path, capsys):
    predictions, outcomes = write_inputs(tmp_path)
    pd.read_csv(outcomes).drop(columns="age_years").assign(site="wien").to_csv(outcomes, index=False)
    pd.read_csv(predictions).drop(columns="site").to_csv(predictions, index=False)
    assert survival(predictions, outcomes, tmp_path / "surv") == 0
    report = json.loads((tmp_path / "surv" / "survival.json").read_text())
    assert list(report["cox"]) == ["univariable"] and report["adjusted_for"] == []
    markdown = (tmp_path / "surv" / "survival.md").read_text()
    assert "No adjusted model" in markdown and "one site only (wien)" in markdown
