"""Joining predictions.csv to an outcomes manifest (evaluation/survival_cohort.py): selection, seeds, threshold,
and bad input that must name the file and row."""

import numpy as np
import pandas as pd
import pytest

from evaluation.survival_cohort import MIN_STUDIES, load_cohort
from synthscan.errors import BadInputError


def write_inputs(folder, n=30, seeds=(0,), arms=("real",), tasks=("metastasis",), outcome_changes=None, extra=None):
    """predictions.csv with scores seed-dependent around 0.5, and a matching outcomes manifest."""
    rng = np.random.default_rng(5)
    base = rng.random(n)
    rows = []
    for task in tasks:
        for arm in arms:
            for seed in seeds:
                for i in range(n):
                    rows.append({"study_id": f"s{i:03d}", "site": "north" if i % 3 else "south", "task": task,
                                 "label": int(base[i] > 0.5), "score": round(0.9 * base[i] + 0.04 * seed, 6),
                                 "seed": seed, "arm": arm, **(extra or {})})
    predictions = pd.DataFrame(rows)
    outcomes = pd.DataFrame({"study_id": [f"s{i:03d}" for i in range(n)], "patient_id": [f"p{i}" for i in range(n)],
                             "site": ["north" if i % 3 else "south" for i in range(n)],
                             "age_years": rng.normal(65, 8, n).round(1), "time_days": rng.integers(1, 900, n),
                             "event": rng.integers(0, 2, n)})
    outcomes = outcomes.astype(object)
    for (row, column), value in (outcome_changes or {}).items():
        outcomes.loc[row, column] = value
    predictions.to_csv(folder / "predictions.csv", index=False)
    outcomes.to_csv(folder / "outcomes.csv", index=False)
    return folder / "predictions.csv", folder / "outcomes.csv"


def test_join_matches_studies_and_thresholds_scores(tmp_path):
    predictions, outcomes = write_inputs(tmp_path)
    extra = pd.read_csv(outcomes)
    extra = pd.concat([extra, extra.head(5).assign(study_id=lambda f: "other-" + f["study_id"])])
    extra.to_csv(outcomes, index=False)  # 5 outcome rows without predictions
    cohort = load_cohort(predictions, outcomes)
    assert (cohort.n_matched, cohort.n_predicted, cohort.n_outcomes) == (30, 30, 35)
    assert cohort.threshold == 0.5 and "default" in cohort.threshold_source
    np.testing.assert_array_equal(cohort.frame["predicted_abnormal"], (cohort.frame["score"] >= 0.5).astype(int))
    assert set(cohort.frame.columns) >= {"study_id", "site", "time_days", "event", "age_years", "predicted_abnormal"}
    assert "30 of 30 predicted studies matched" in cohort.summary()
    assert load_cohort(predictions, outcomes, threshold=0.8).frame["predicted_abnormal"].sum() < \
        cohort.frame["predicted_abnormal"].sum()


def test_several_seeds_are_averaged_unless_one_is_chosen(tmp_path):
    predictions, outcomes = write_inputs(tmp_path, seeds=(0, 1, 2))
    mean = load_cohort(predictions, outcomes)
    single = load_cohort(predictions, outcomes, seed=2)
    raw = pd.read_csv(predictions)
    expected = raw.groupby("study_id")["score"].mean()
    np.testing.assert_allclose(mean.frame.set_index("study_id")["score"], expected[mean.frame["study_id"]])
    assert mean.seeds == (0, 1, 2) and single.seeds == (2,)
    np.testing.assert_allclose(single.frame["score"], raw[raw["seed"] == 2].set_index("study_id")["score"]
                               [single.frame["study_id"]])
    assert mean.fingerprint != single.fingerprint


def test_task_and_arm_must_be_chosen_when_several(tmp_path):
    predictions, outcomes = write_inputs(tmp_path, arms=("real", "mixed"), tasks=("metastasis", "amyloidosis"))
    with pytest.raises(BadInputError, match=r"several tasks \['amyloidosis', 'metastasis'\].*--task"):
        load_cohort(predictions, outcomes)
    with pytest.raises(BadInputError, match=r"several arms.*--arm"):
        load_cohort(predictions, outcomes, task="metastasis")
    with pytest.raises(BadInputError, match=r"--arm 'nope' not in the predictions"):
        load_cohort(predictions, outcomes, task="metastasis", arm="nope")
    cohort = load_cohort(predictions, outcomes, task="metastasis", arm="mixed")
    assert (cohort.task, cohort.arm, cohort.n_matched) == ("metastasis", "mixed", 30)


def test_threshold_column_is_used(tmp_path):
    predictions, outcomes = write_inputs(tmp_path, extra={"threshold": 0.7})
    cohort = load_cohort(predictions, outcomes)
    assert cohort.threshold == 0.7 and "column" in cohort.threshold_source
    assert load_cohort(predictions, outcomes, threshold=0.2).threshold == 0.2


def test_logits_need_an_explicit_threshold(tmp_path):
    predictions, outcomes = write_inputs(tmp_path)
    frame = pd.read_csv(predictions)
    frame.assign(score=frame["score"] * 8 - 4).to_csv(predictions, index=False)
    with pytest.raises(BadInputError, match=r"predictions.csv: row \d+: score .* not a probability"):
        load_cohort(predictions, outcomes)
    assert load_cohort(predictions, outcomes, threshold=0.0).threshold == 0.0


@pytest.mark.parametrize("changes, message", [
    ({(3, "time_days"): -5}, r"outcomes.csv: column 'time_days', row 5: negative time -5"),
    ({(4, "time_days"): None}, r"outcomes.csv: column 'time_days', row 6: empty for study 's004'"),
    ({(2, "event"): None}, r"outcomes.csv: column 'event', row 4: empty"),
    ({(7, "event"): 2}, r"outcomes.csv: column 'event', row 9: unknown value 2"),
    ({(7, "event"): "dead"}, r"outcomes.csv: column 'event', row 9: 'dead' is not a number"),
    ({(1, "site"): "west"}, r"study 's001' is at site 'west' in the outcomes \(.*outcomes.csv, row 3\)"),
    ({(0, "age_years"): None}, r"outcomes.csv: column 'age_years', row 2: empty"),
])
def test_bad_outcomes_name_file_row_and_column(tmp_path, changes, message):
    predictions, outcomes = write_inputs(tmp_path, outcome_changes=changes)
    with pytest.raises(BadInputError, match=message):
        load_cohort(predictions, outcomes)


def test_no_or_too_few_shared_study_ids(tmp_path):
    predictions, outcomes = write_inputs(tmp_path)
    frame = pd.read_csv(outcomes)
    frame.assign(study_id="x" + frame["study_id"]).to_csv(outcomes, index=False)
    with pytest.raises(BadInputError, match="share no study ids"):
        load_cohort(predictions, outcomes)
    frame.head(MIN_STUDIES - 1).to_csv(outcomes, index=False)
    with pytest.raises(BadInputError, match=f"share only {MIN_STUDIES - 1} study ids"):
        load_cohort(predictions, outcomes)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.assign(score=f["score"].astype(object).where(f.index != 4, "high")),
     r"predictions.csv: column 'score', row 6: 'high' is not a finite number"),
    (lambda f: f.assign(score=f["score"].where(f.index != 0)), r"predictions.csv: column 'score', row 2: empty"),
    (lambda f: f.drop(columns="score"), r"predictions lack column\(s\) \['score'\]"),
    (lambda f: pd.concat([f, f.tail(1)]), r"predictions.csv: row 32: study 's029' scored twice"),
])
def test_bad_predictions_name_file_and_row(tmp_path, edit, message):
    predictions, outcomes = write_inputs(tmp_path)
    edit(pd.read_csv(predictions)).to_csv(predictions, index=False)
    with pytest.raises(BadInputError, match=message):
        load_cohort(predictions, outcomes)


def test_seeds_scoring_different_studies_are_refused(tmp_path):
    predictions, outcomes = write_inputs(tmp_path, seeds=(0, 1))
    frame = pd.read_csv(predictions)
    frame.drop(index=frame.index[-1]).to_csv(predictions, index=False)
    with pytest.raises(BadInputError, match="score different studies"):
        load_cohort(predictions, outcomes)
    assert load_cohort(predictions, outcomes, seed=1).n_matched == 29
