"""``synthscan reproduce`` end to end on the smoke recipe: the run-folder contract, resume, refusals."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from evaluation.reproduce import STAGES
from evaluation.reproduce_recipe import load_recipe
from synthscan.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "recipes" / "smoke.toml"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "smoke"
    assert main(["reproduce", str(SMOKE), "--out", str(out), "--quiet"]) == 0
    return out


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_every_stage_leaves_its_outputs(smoke_run):
    info = json.loads((smoke_run / "run.json").read_text())
    recipe = load_recipe(SMOKE)
    assert set(info["stages"]) == set(STAGES)  # the smoke recipe trains its generator: every stage ran
    assert all((smoke_run / "stages" / f"{stage}.json").is_file() for stage in STAGES)
    assert info["recipe_sha256"] == recipe.sha256 and info["phantom_version"] == "1.0"
    for name in ("audit/audit.json", "fidelity/fidelity.json", "reader/results/results.json", "generator/model",
                 "synthetic/manifest.csv", "report.md", "report.html"):
        assert (smoke_run / name).exists(), name
    for condition in ("normal", "metastasis", "amyloidosis"):
        assert (smoke_run / "synthetic" / condition / "contact_sheet.png").is_file()
    synthetic = pd.read_csv(smoke_run / "synthetic" / "manifest.csv", dtype=str)
    assert set(zip(synthetic["condition"], synthetic["negative_condition"])) == {
        ("normal", "metastasis"), ("metastasis", "none"), ("amyloidosis", "none")}  # the smoke recipe's sampler
    assert "normal guided away from metastasis at 1, guidance at noise levels (0.1, 5], 4 steps)" in (
        smoke_run / "report.md").read_text()
    fidelity = json.loads((smoke_run / "fidelity" / "fidelity.json").read_text())
    by_extent = fidelity["judge_by_extent"]  # the phantom's held-out scans give lesion counts
    assert by_extent and sum(r["n"] for r in by_extent.values()) == fidelity["judge_accuracy_real"]["metastasis"]["n"]
    assert "by extent of disease (Soloway): EOD 1 (1-5 lesions)" in (smoke_run / "report.md").read_text()
    assert (smoke_run / "survival" / "survival.json").is_file() or (
        smoke_run / "survival" / "not_estimable.json").is_file()


def test_predictions_cover_every_arm_seed_and_site_and_no_synthetic_test_scan(smoke_run):
    recipe = load_recipe(SMOKE)
    predictions = pd.read_csv(smoke_run / "predictions.csv", dtype={"study_id": str})
    runs = predictions.groupby(["task", "arm", "seed"])["site"].apply(set)
    expected_runs = {(t, a["name"], s) for t in recipe["tasks"] for a in recipe.arms for s in recipe["seeds"]}
    assert set(runs.index) == expected_runs
    assert all(sites == {"birch-mdp", "cedar-hmdp", "elm-mdp"} for sites in runs)
    assert not predictions["study_id"].str.startswith("syn-").any()
    train = pd.read_csv(smoke_run / "data" / "splits" / "train.csv", dtype=str)
    tested = pd.read_csv(smoke_run / "data" / "splits" / "internal-test.csv", dtype=str)
    assert not set(train["patient_id"]) & set(tested["patient_id"])
    mixed = pd.read_csv(smoke_run / "classifiers" / "metastasis" / "mixed-x1" / "seed-0" / "val_predictions.csv",
                        dtype={"study_id": str})
    assert not mixed["study_id"].str.startswith("syn-").any()  # validation stays real


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_report_states_the_paper_claims_and_embeds_its_figures(smoke_run):
    text = (smoke_run / "report.md").read_text()
    for claim in ("AUC gain with synthetic data, metastasis", "AUC gain with synthetic data, amyloidosis",
                  "log-rank, predicted abnormal vs normal", "reader study accuracy", "phantom simulator version",
                  "Reporting checklist"):
        assert claim in text
    parser = _Images()
    parser.feed((smoke_run / "report.html").read_text())
    assert len(parser.sources) >= 5 and all(src.startswith("data:image/png;base64,") for src in parser.sources)


def test_rerun_skips_finished_stages(smoke_run, capsys):
    before = _files(smoke_run)
    assert main(["reproduce", str(SMOKE), "--out", str(smoke_run)]) == 0
    assert _files(smoke_run) == before
    assert capsys.readouterr().out.count("done before, skipped") == len(STAGES)


def test_lost_classifier_run_is_redone_alone_with_the_same_predictions(smoke_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(smoke_run, out)
    before = pd.read_csv(out / "predictions.csv")
    shutil.rmtree(out / "classifiers" / "metastasis" / "real-only" / "seed-0")
    for stage in ("classifiers", "predictions", "survival", "reader", "report"):
        (out / "stages" / f"{stage}.json").unlink()
    untouched = out / "classifiers" / "metastasis" / "mixed-x1" / "seed-0" / "test_predictions.csv"
    stamp = untouched.stat().st_mtime_ns
    assert main(["reproduce", str(SMOKE), "--out", str(out), "--quiet"]) == 0
    assert untouched.stat().st_mtime_ns == stamp
    after = pd.read_csv(out / "predictions.csv")
    pd.testing.assert_frame_equal(before, after, check_exact=False, atol=1e-5)


def test_another_recipe_into_the_same_folder_is_refused(smoke_run, tmp_path, capsys):
    other = tmp_path / "other.toml"
    other.write_text(SMOKE.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    before = _files(smoke_run)
    assert main(["reproduce", str(other), "--out", str(smoke_run), "--quiet"]) == 2
    assert "another recipe" in capsys.readouterr().err
    assert _files(smoke_run) == before


def test_a_folder_holding_something_else_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["reproduce", str(SMOKE), "--out", str(tmp_path), "--quiet"]) == 2
    assert "holds no reproduce run" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_users_manifests_instead_of_the_phantom(smoke_run, tmp_path):
    splits = smoke_run / "data" / "splits"
    recipe = tmp_path / "mine.toml"
    recipe.write_text(f"""
[reproduce]
name = "mine"
seeds = [0]
tasks = ["metastasis"]
[reproduce.data]
source = "manifests"
[reproduce.data.manifests]
generator = "{splits / 'generator-train.csv'}"
generator_holdout = "{splits / 'generator-holdout.csv'}"
train = "{splits / 'train.csv'}"
internal_test = "{splits / 'internal-test.csv'}"
external = {{ far-away = "{splits / 'external-cedar-hmdp.csv'}" }}
[reproduce.generator]
model = "{smoke_run / 'generator' / 'model'}"
[reproduce.synthetic]
ratios = [1.0]
primary = 1.0
extra_per_condition = 2
[reproduce.classifier]
arch = "tiny"
grid = [64, 16]
steps = 4
batch_size = 8
eval_every = 2
""")
    out = tmp_path / "run"
    assert main(["reproduce", str(recipe), "--out", str(out), "--quiet",
                 "--stages", "data,sample,classifiers,predictions"]) == 0
    predictions = pd.read_csv(out / "predictions.csv")
    assert set(predictions["site"]) == {"birch-mdp", "cedar-hmdp"}  # sites named in the manifests are kept
    info = json.loads((out / "run.json").read_text())
    assert info["sites"]["train"]["studies"] == len(pd.read_csv(splits / "train.csv"))
    assert not (out / "data" / "generator").exists()  # nothing simulated
