"""``synthscan audit`` end to end on toy DICOM cohorts in a temp dir: report, planted copies, bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthscan.cli import main
from synthscan.io.dicom import write_scan
from synthscan.io.manifest import write_manifest
from synthscan.scan import Scan

_spec = importlib.util.spec_from_file_location(
    "privacy_phantom", Path(__file__).parents[1] / "unit" / "test_privacy_phantom.py")
phantom = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(phantom)

# Identifiers written into the training DICOM files: none of them may reach any output.
PHI = {"patient_name": "Doe^Jane", "patient_id": "MRN-7734921", "institution_name": "Saint Example Hospital",
       "accession_number": "ACC99812", "referring_physician": "Who^Doctor"}


def write_set(folder: Path, scans, prefix: str, synthetic: int = 0, views: str = "anterior+posterior") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, scan in enumerate(scans):
        write_scan(folder / f"{prefix}{i:03d}.dcm", scan, PHI)
        rows.append({"study_id": f"{prefix}-{i:03d}", "patient_id": f"{prefix}-pt{i:03d}", "path": f"{prefix}{i:03d}.dcm",
                     "views": views, "synthetic": synthetic, "metastasis": i % 2, "amyloid_grade": 0})
    return write_manifest(pd.DataFrame(rows), folder / "manifest.csv")


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """40 training, 30 held-out and 14 'synthetic' scans: 12 independent, an exact and a re-acquired copy."""
    root = tmp_path_factory.mktemp("audit")
    train = phantom.cohort(40, seed=31)
    rng = np.random.default_rng(0)
    samples = phantom.cohort(12, seed=33) + [train[5], Scan(rng.poisson(train[17].counts).astype(np.float32),
                                                            train[17].pixel_spacing_mm)]
    return {"train": write_set(root / "train", train, "tr"), "holdout": write_set(root / "holdout",
                                                                               phantom.cohort(30, seed=32), "ho"),
            "samples": write_set(root / "synth", samples, "syn", synthetic=1), "root": root}


def audit(cohorts, out, *extra, samples=None, train=None):
    return main(["audit", "--samples", str(samples or cohorts["samples"]), "--train", str(train or cohorts["train"]),
                 "--out", str(out), *extra])


def test_audit_report_flags_planted_copies_and_leaks_no_identifier(cohorts, tmp_path, capsys):
    out = tmp_path / "reports" / "audit"
    assert audit(cohorts, out, "--holdout", str(cohorts["holdout"]), "--false-positive-rate", "0.05") == 0
    printed = capsys.readouterr().out
    assert "pixel distance:" in printed and "membership inference, nn-distance (pixel)" in printed and "wrote" in printed
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert {"audit.md", "audit.json", "nearest_neighbours.csv", "reference_neighbours.csv",
            "distances.png"} <= set(files)

    table = pd.read_csv(out / "nearest_neighbours.csv", dtype={"study_id": str})
    assert len(table) == 14 and table["study_id"].tolist() == [f"syn-{i:03d}" for i in range(14)]
    planted = table.set_index("study_id").loc[["syn-012", "syn-013"]]
    assert planted["flagged"].tolist() == [1, 1]
    assert planted["pixel_nearest_study_id"].tolist() == ["tr-005", "tr-017"]
    assert (planted[["pixel_distance_flagged", "pixel_ratio_flagged"]] == 1).all(axis=None)

    report = json.loads((out / "audit.json").read_text())
    assert report["inputs"]["train"]["n_scans"] == 40 and report["inputs"]["held-out"]["n_scans"] == 30
    rules = {rule["rule"]: rule for rule in report["rules"]}
    assert list(rules) == ["pixel distance", "pixel ratio"]
    for name, rule in rules.items():
        assert rule["n_reference"] == 30 and rule["order_statistic_k"] == 1
        rate = rule["near_copies"]
        assert rate["flagged"] == table[f"pixel_{rule['criterion']}_flagged"].sum() >= 2
        assert 0 <= rate["ci_low"] <= rate["rate"] <= rate["ci_high"]
        assert (planted[f"pixel_{rule['criterion']}"] < rule["threshold"]).all()
    assert [t["test"] for t in report["tests"]] == [
        "near-copies (pixel distance)", "near-copies (pixel ratio)", "data-copying (pixel)",
        "membership nn-distance (pixel)"]
    assert report["settings"]["alpha_per_test"] == pytest.approx(0.05 / 4)
    assert report["memorization_detected"] == any(t["p_value"] < 0.05 / 4 for t in report["tests"])
    [attack] = report["membership"]
    assert attack["attack"] == "nn-distance (pixel)" and attack["ci_low"] <= attack["estimate"] <= attack["ci_high"]
    assert (attack["n_members"], attack["n_nonmembers"]) == (40, 30)
    pairs = report["flagged_pairs"]
    assert len(pairs) == table["flagged"].sum() and all((out / p["file"]).is_file() for p in pairs)
    assert pairs[0]["study_id"] == "syn-012"  # the exact copy is the closest
    assert "syn-012" in (out / "audit.md").read_text()

    for path in out.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(value.encode() in content for value in PHI.values()), path
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_audit_with_the_generator_adds_its_feature_space_and_loss_attacks(cohorts, tmp_path):
    from synthscan.model.tiny import tiny_model

    tiny_model(seed=3).save_pretrained(tmp_path / "model")
    out = tmp_path / "audit"
    assert audit(cohorts, out, "--holdout", str(cohorts["holdout"]), "--model", str(tmp_path / "model"),
                 "--max-pairs", "1") == 0
    report = json.loads((out / "audit.json").read_text())
    assert list(report["spaces"]) == ["pixel", "features"]
    assert "generator encoder" in report["spaces"]["features"]["description"]
    assert report["settings"]["false_positive_rate_per_rule"] == pytest.approx(0.0025)
    assert [a["attack"] for a in report["membership"]] == [
        "nn-distance (pixel)", "nn-distance (features)", "denoising-loss", "reconstruction"]
    assert len(report["flagged_pairs"]) == 1 and report["inputs"]["model"]["hash"]
    table = pd.read_csv(out / "nearest_neighbours.csv")
    assert table.set_index("study_id").loc["syn-012", "features_distance"] < 1e-6


def test_audit_without_holdout_calibrates_on_training_patients(cohorts, tmp_path):
    out = tmp_path / "audit"
    assert audit(cohorts, out) == 0
    report = json.loads((out / "audit.json").read_text())
    assert "leave one patient out" in report["settings"]["calibration"]
    assert report["membership"] == [] and any("no held-out" in w for w in report["warnings"])
    assert "not tested" in (out / "audit.md").read_text()


def test_single_view_scans(tmp_path):
    scans = [Scan(s.counts[:1], s.pixel_spacing_mm, ("anterior",)) for s in phantom.cohort(10, seed=40)]
    train = write_set(tmp_path / "train", scans[:8], "tr", views="anterior")
    samples = write_set(tmp_path / "synth", [scans[8], scans[2]], "syn", synthetic=1, views="anterior")
    assert main(["audit", "--samples", str(samples), "--train", str(train), "--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "nearest_neighbours.csv")
    assert table["flagged"].tolist() == [0, 1]


def _edited(manifest: Path, folder: Path, edit) -> Path:
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    frame["path"] = [str(manifest.parent / p) for p in frame["path"]]
    path = folder / f"edited-{manifest.parent.name}.csv"
    edit(frame).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case, message", [
    ("no path column", "lacks required column(s) ['path']"),
    ("empty samples", "samples manifest has no scans"),
    ("sample is a training study", "both synthetic and train"),
    ("missing file", "not found"),
    ("views differ", "same views"),
    ("blank views", "row 2: empty 'views'"),
])
def test_bad_input_exits_2_without_output(cohorts, tmp_path, capsys, case, message):
    samples, train = cohorts["samples"], cohorts["train"]
    if case == "no path column":
        samples = _edited(samples, tmp_path, lambda f: f.drop(columns="path"))
    elif case == "empty samples":
        samples = _edited(samples, tmp_path, lambda f: f.iloc[:0])
    elif case == "sample is a training study":
        samples = _edited(samples, tmp_path, lambda f: f.assign(study_id=["tr-001"] + list(f["study_id"][1:])))
    elif case == "missing file":
        samples = _edited(samples, tmp_path, lambda f: f.assign(path=list(f["path"][:-1]) + ["gone.dcm"]))
    elif case == "views differ":
        samples = _edited(samples, tmp_path, lambda f: f.assign(views="anterior"))
    elif case == "blank views":
        samples = _edited(samples, tmp_path, lambda f: f.assign(views=[""] + list(f["views"][1:])))
    out = tmp_path / "out"
    assert audit(cohorts, out, samples=samples, train=train) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_existing_report_needs_overwrite(cohorts, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert audit(cohorts, out) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert audit(cohorts, out, "--overwrite", "--max-pairs", "0") == 0
    assert not (out / "keep.txt").exists() and (out / "audit.json").exists() and not (out / "flagged").exists()


def test_fitted_auditor_for_rejection_sampling(cohorts):
    """The API ``synthscan sample --audit`` uses: fit on manifests once, then ask about each new scan."""
    from synthscan.audit_report import fit_auditor
    from synthscan.io.dicom import read_scan

    auditor = fit_auditor(cohorts["train"], cohorts["holdout"], false_positive_rate=0.05, progress=False)
    training_scan = read_scan(cohorts["train"].parent / "tr005.dcm")
    rng = np.random.default_rng(9)
    assert auditor.is_near_copy(Scan(rng.poisson(training_scan.counts).astype(np.float32), (4.8, 4.8)))
    assert not auditor.is_near_copy(read_scan(cohorts["holdout"].parent / "ho003.dcm"))


def test_audit_with_the_fidelity_judge_as_feature_space(cohorts, tmp_path):
    import torch

    from evaluation.fidelity import Judge, JudgeConfig
    from synthscan.model.critic import ScanClassifier

    torch.manual_seed(0)
    judge = Judge(JudgeConfig(width=4, members=1))
    judge.networks_ = [ScanClassifier(views=2, width=4).eval()]
    judge.save(tmp_path / "judge")
    out = tmp_path / "audit"
    assert audit(cohorts, out, "--judge", str(tmp_path / "judge"), "--max-pairs", "0") == 0
    report = json.loads((out / "audit.json").read_text())
    assert "fidelity judge" in report["spaces"]["features"]["description"]
    table = pd.read_csv(out / "nearest_neighbours.csv").set_index("study_id")
    assert table.at["syn-012", "features_nearest_study_id"] == "tr-005"


def test_bad_grid_exits_2(cohorts, tmp_path, capsys):
    assert audit(cohorts, tmp_path / "out", "--grid", "128by32") == 2
    assert "--grid must look like 128x32" in capsys.readouterr().err
    assert audit(cohorts, tmp_path / "out", "--grid", "2x2") == 2
    assert "at least 4x4" in capsys.readouterr().err
