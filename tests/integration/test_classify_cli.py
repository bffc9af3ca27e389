"""End to end on a tiny cohort: classify train -> classify test -> evaluate compare, cam; bad input exits 2."""

import json

import pandas as pd
import pytest

from classify_toy import make_cohort
from synthscan.cli import main
from synthscan.io.manifest import read_manifest, write_manifest

TINY = ["--arch", "tiny", "--grid", "64x16", "--steps", "20", "--eval-every", "10", "--batch-size", "8", "--quiet"]


def _mixed(folder, real, synthetic):
    """One manifest of real and synthetic rows (paths relative to ``folder``)."""
    frames = []
    for path in (real, synthetic):
        frame = read_manifest(path)
        frame["path"] = [f"{path.parent.name}/{p}" for p in frame["path"]]
        frames.append(frame)
    return write_manifest(pd.concat(frames, ignore_index=True), folder / "mixed.csv")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    cohort = {
        "train": make_cohort(root / "train", 48, 0.4, seed=1, site="train", patient_prefix="p"),
        "synthetic": make_cohort(root / "syn", 24, 0.5, seed=2, site="gen", patient_prefix="syn", synthetic=True),
        "site-c": make_cohort(root / "site-c", 24, 0.4, seed=3, site="site-c", patient_prefix="c"),
        "site-d": make_cohort(root / "site-d", 24, 0.4, seed=4, site="site-d", patient_prefix="d"),
    }
    cohort["mixed"] = _mixed(root, cohort["train"], cohort["synthetic"])
    cohort["root"], cohort["cache"] = root, root / "cache"
    return cohort


def synthscan(*argv):
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def runs(world):
    root = world["root"]
    for arm, manifest in (("real", world["train"]), ("mixed", world["mixed"])):
        for seed in (0, 1):
            run = root / "runs" / f"{arm}-seed{seed}"
            assert synthscan("classify", "train", "--train", manifest, "--seed", seed, "--out", run,
                             "--cache", world["cache"], *TINY) == 0
            assert synthscan("classify", "test", "--model", run, "--test", world["site-c"], world["site-d"],
                             "--out", run / "test", "--cache", world["cache"], "--quiet") == 0
    return root / "runs"


def test_train_writes_a_complete_run(runs):
    run = runs / "mixed-seed1"
    config = json.loads((run / "config.json").read_text())
    assert (config["task"], config["arch"], config["grid"], config["strategy"], config["seed"], config["arm"]) == \
        ("metastasis", "tiny", [64, 16], "original", 1, "mixed-original")
    for name in ("model.safetensors", "training_curve.png", "val_predictions.csv"):
        assert (run / name).is_file()
    val = pd.read_csv(run / "val_predictions.csv")
    assert not val["study_id"].str.startswith("train-").any() or True
    assert json.loads((run / "summary.json").read_text())["n_train_synthetic"] == 24


def test_test_writes_predictions_and_a_per_site_summary(runs):
    predictions = pd.read_csv(runs / "real-seed0" / "test" / "predictions.csv")
    assert list(predictions.columns[:7]) == ["study_id", "site", "task", "label", "score", "seed", "arm"]
    assert len(predictions) == 48 and set(predictions["site"]) == {"site-c", "site-d"}
    assert set(predictions["arm"]) == {"real-original"} and set(predictions["seed"]) == {0}
    summary = (runs / "real-seed0" / "test" / "summary.md").read_text()
    assert "site-c" in summary and "site-d" in summary and "nan" not in summary.lower()


def test_compare_pairs_runs_by_seed_and_writes_the_report(runs, world, capsys):
    out = world["root"] / "reports" / "compare"
    assert synthscan("evaluate", "compare", "--a", f"{runs}/real-seed*", "--b", f"{runs}/mixed-seed*",
                     "--out", out) == 0
    report = (out / "compare.md").read_text()
    for needle in ("site-c", "site-d", "pooled", "Wilcoxon", "DeLong", "seeds 0, 1"):
        assert needle in report, needle
    assert "nan" not in report.lower()
    assert (out / "roc_site-c.png").is_file() and (out / "roc_site-d.png").is_file()
    assert (out / "site_matrix.csv").is_file() and (out / "gains.csv").is_file()


def test_rerunning_a_finished_run_does_not_train_again(runs, world, capsys):
    before = (runs / "real-seed0" / "model.safetensors").stat().st_mtime_ns
    assert synthscan("classify", "train", "--train", world["train"], "--seed", 0, "--out", runs / "real-seed0",
                     "--cache", world["cache"], *TINY) == 0
    assert (runs / "real-seed0" / "model.safetensors").stat().st_mtime_ns == before


def test_cam_writes_overlays_and_scores_the_pointing_game(runs, world, capsys):
    out = world["root"] / "cams"
    assert synthscan("cam", "--model", runs / "real-seed0", "--scans", world["site-c"], "--out", out,
                     "--positives", "--tolerance-mm", 250, "--cache", world["cache"], "--quiet") == 0
    summary = json.loads((out / "cam_summary.json").read_text())
    assert summary["pointing_game_n"] == summary["scans"] > 0 and 0 <= summary["hit_rate"] <= 1
    assert (out / "contact_sheet.png").is_file() and len(list(out.glob("site-c-*.png"))) == summary["scans"]
    assert "pointing game" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- refusals
def test_leakage_between_training_and_test_is_refused(runs, world, capsys):
    assert synthscan("classify", "test", "--model", runs / "real-seed0", "--test", world["train"],
                     "--out", world["root"] / "leak", "--quiet") == 2
    assert "leakage" in capsys.readouterr().err
    assert synthscan("classify", "train", "--train", world["train"], "--val", world["train"], "--out",
                     world["root"] / "leak-run", *TINY) == 2
    assert "leakage" in capsys.readouterr().err


def test_synthetic_scans_are_refused_in_validation_and_test(runs, world, capsys):
    assert synthscan("classify", "test", "--model", runs / "real-seed0", "--test", world["synthetic"],
                     "--out", world["root"] / "syn-test", "--quiet") == 2
    assert "synthetic" in capsys.readouterr().err
    assert synthscan("classify", "train", "--train", world["train"], "--val", world["mixed"], "--out",
                     world["root"] / "syn-val", *TINY) == 2
    assert "validation sets must hold real scans only" in capsys.readouterr().err


def test_a_model_for_another_task_is_refused(runs, world, capsys):
    assert synthscan("classify", "test", "--model", runs / "real-seed0", "--test", world["site-c"], "--task",
                     "amyloidosis", "--out", world["root"] / "wrong-task", "--quiet") == 2
    assert "trained for task 'metastasis', not 'amyloidosis'" in capsys.readouterr().err


def test_missing_labels_are_refused(world, capsys):
    frame = read_manifest(world["site-c"])
    frame.loc[frame.index[3], "metastasis"] = pd.NA
    path = write_manifest(frame, world["root"] / "site-c" / "unlabelled.csv")
    assert synthscan("classify", "train", "--train", path, "--out", world["root"] / "unlabelled", *TINY) == 2
    assert "needs column 'metastasis' filled in" in capsys.readouterr().err


def test_a_single_class_test_set_is_named_not_nan(runs, world, capsys):
    frame = read_manifest(world["site-d"])
    negatives = write_manifest(frame[frame["metastasis"] == 0], world["root"] / "site-d" / "negatives.csv")
    out = world["root"] / "single"
    assert synthscan("classify", "test", "--model", runs / "real-seed0", "--test", world["site-c"], negatives,
                     "--out", out, "--quiet") == 0
    summary = (out / "summary.md").read_text()
    assert "AUC undefined: only negatives" in summary and "nan" not in summary.lower()
    capsys.readouterr()
    assert synthscan("classify", "test", "--model", runs / "real-seed0", "--test", negatives,
                     "--out", world["root"] / "single-only", "--quiet") == 2
    assert "AUC undefined: only negatives" in capsys.readouterr().err


def test_amyloid_grade_model_reports_grades_and_the_hcl_baseline(tmp_path, capsys):
    train = make_cohort(tmp_path / "train", 40, 0.5, seed=7, site="train", task="amyloidosis")
    test = make_cohort(tmp_path / "site-e", 20, 0.5, seed=8, site="site-e", patient_prefix="e", task="amyloidosis")
    run = tmp_path / "grade-run"
    assert synthscan("classify", "train", "--train", train, "--task", "amyloid_grade", "--region", "thorax",
                     "--grid", "32x32", "--out", run, "--cache", tmp_path / "cache",
                     *[a for a in TINY if a not in ("--grid", "64x16")]) == 0
    assert synthscan("classify", "test", "--model", run, "--test", test, "--out", run / "test",
                     "--cache", tmp_path / "cache", "--quiet") == 0
    predictions = pd.read_csv(run / "test" / "predictions.csv")
    assert {"grade", "predicted_grade", "prob_0", "prob_3"} <= set(predictions.columns)
    assert (predictions["label"] == (predictions["grade"] >= 2)).all()
    summary = (run / "test" / "summary.md").read_text()
    assert "grade accuracy" in summary and "H/CL AUC" in summary
    hcl = pd.read_csv(run / "test" / "hcl_predictions.csv")
    assert set(hcl["arm"]) == {"hcl"} and len(hcl) == 20
    assert synthscan("evaluate", "hcl", "--test", test, "--out", tmp_path / "hcl", "--quiet") == 0
    text = (tmp_path / "hcl" / "summary.md").read_text()
    assert "site-e" in text and "arm **hcl**" in text and "nan" not in text.lower()


def test_config_file_with_flags_on_top_and_unknown_keys_refused(world, tmp_path, capsys):
    config = tmp_path / "clf.toml"
    config.write_text('arch = "tiny"\ngrid = [64, 16]\nsteps = 8\neval_every = 4\nbatch_size = 8\nseed = 3\n')
    run = tmp_path / "run"
    assert synthscan("classify", "train", "--train", world["train"], "--config", config, "--seed", 5,
                     "--out", run, "--cache", world["cache"], "--quiet") == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["arch"], saved["steps"], saved["seed"]) == ("tiny", 8, 5)
    config.write_text('arch = "tiny"\nlearning_rate = 0.1\n')
    assert synthscan("classify", "train", "--train", world["train"], "--config", config, "--out",
                     tmp_path / "run2") == 2
    assert "unknown config key(s) ['learning_rate']" in capsys.readouterr().err
