"""``synthscan fidelity`` end to end on toy cohorts and the tiny random model."""

from __future__ import annotations

import json

from synthscan.cli import main
from synthscan.model.tiny import tiny_model, toy_cohort


def test_fidelity_cli_writes_report_and_reuses_its_judge(tmp_path, capsys):
    train = toy_cohort(tmp_path / "train", n=30, seed=1)
    test = toy_cohort(tmp_path / "test", n=24, seed=2)
    tiny_model(seed=4).save_pretrained(tmp_path / "model")
    out = tmp_path / "fidelity"
    assert main(["fidelity", "--train", str(train), "--test", str(test), "--model", str(tmp_path / "model"),
                 "--n", "12", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "fidelity.json").read_text())
    assert set(report["conditional_accuracy"]) == {"normal", "metastasis", "amyloidosis", "overall"}
    assert report["n_frechet"] == 12 and len(report["frechet_distance"]) == 3 and min(report["frechet_distance"]) > 0
    assert report["frechet_ratio"] == sorted(report["frechet_ratios"])[1]  # the median of the judge's 3 networks
    assert 0 <= report["detectability_auc"]["estimate"] <= 1
    assert report["detectability_auc"]["estimate"] == sorted(report["detectability_aucs"])[1]  # the median network's
    for part in ("judge_accuracy_real", "conditional_accuracy"):
        for cell in report[part].values():  # every accuracy with its Wilson interval
            assert cell["ci_low"] <= cell["accuracy"] <= cell["ci_high"] and cell["accuracy"] == cell["correct"] / cell["n"]
    difference = report["accuracy_difference"]["overall"]
    assert difference["estimate"] == (report["conditional_accuracy"]["overall"]["accuracy"]
                                      - report["judge_accuracy_real"]["overall"]["accuracy"])
    assert difference["ci_low"] <= difference["estimate"] <= difference["ci_high"]
    assert "hot_spots" in (out / "fidelity.md").read_text()
    again = tmp_path / "again"
    assert main(["fidelity", "--judge", str(out / "judge"), "--test", str(test), "--synthetic",
                 str(out / "samples" / "manifest.csv"), "--n", "12", "--out", str(again), "--quiet"]) == 0
    assert json.loads((again / "fidelity.json").read_text())["conditional_accuracy"] == report["conditional_accuracy"]
    capsys.readouterr()
    assert main(["fidelity", "--test", str(test), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "x")]) == 2
    assert main(["fidelity", "--train", str(train), "--test", str(test), "--model", str(tmp_path / "model"),
                 "--judge-members", "0", "--out", str(tmp_path / "y")]) == 2
    assert "--judge-members must be >= 1" in capsys.readouterr().err and not (tmp_path / "y").exists()
