"""``synthscan sample`` end to end: CLI exit codes, valid DICOM, two processes give the same scans."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from factories import dciodvfy_errors
from synthscan.cli import main
from synthscan.io.dicom import read_scan
from synthscan.io.manifest import read_manifest
from synthscan.model.tiny import tiny_model

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_model(seed=3).save_pretrained(folder)
    return folder


def test_cli_writes_valid_dicom_png_manifest_and_sheet(model_dir, tmp_path, dciodvfy, capsys):
    out = tmp_path / "synth"
    assert main(["sample", "--model", str(model_dir), "--condition", "amyloidosis", "--grade", "2", "-n", "3",
                 "--out", str(out), "--format", "dicom,png", "--matrix", "128x32", "--seed", "40", "--quiet"]) == 0
    assert "3 scans written" in capsys.readouterr().out
    frame = read_manifest(out / "manifest.csv")
    assert len(frame) == 3 and (out / "contact_sheet.png").is_file()
    for path in frame["path"]:
        assert dciodvfy_errors(out / path) == []
        assert (out / path).with_suffix(".png").is_file()


@pytest.mark.parametrize("arguments", [
    ["--condition", "tumour", "-n", "2"],
    ["--condition", "normal", "-n", "-1"],
    ["--condition", "normal", "--grade", "3", "-n", "2"],
    ["--condition", "normal", "-n", "2", "--matrix", "big"],
    ["--condition", "normal", "-n", "2", "--format", "gif"],
    ["--condition", "normal", "-n", "2", "--negative-condition", "normal"],
    ["--condition", "metastasis", "-n", "2", "--negative-scale", "2"],  # the model has no negative for it
    ["--condition", "normal", "-n", "2", "--guidance-interval", "5"],
    ["--condition", "normal", "-n", "2", "--guidance-interval", "5,0.1"],
])
def test_cli_bad_input_exits_2_and_writes_nothing(model_dir, tmp_path, arguments, capsys):
    out = tmp_path / "synth"
    assert main(["sample", "--model", str(model_dir), "--out", str(out), *arguments]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not out.exists()


def test_cli_refuses_a_folder_that_is_not_a_model(tmp_path):
    assert main(["sample", "--model", str(tmp_path), "--condition", "normal", "-n", "1",
                 "--out", str(tmp_path / "synth")]) == 2
    assert not (tmp_path / "synth").exists()


def test_two_processes_write_the_same_scans_as_one(model_dir, tmp_path):
    single = tmp_path / "single"
    assert main(["sample", "--model", str(model_dir), "--condition", "metastasis", "-n", "5", "--seed", "3",
                 "--out", str(single), "--quiet", "--batch-size", "2", "--workers", "1"]) == 0
    sharded = tmp_path / "sharded"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(29900 + os.getpid() % 90), "-m", "synthscan", "sample", "--model", str(model_dir),
               "--condition", "metastasis", "-n", "5", "--seed", "3", "--out", str(sharded), "--quiet"]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("5 scans written") == 1  # totals over both processes, printed once
    one, two = read_manifest(single / "manifest.csv"), read_manifest(sharded / "manifest.csv")
    assert one["study_id"].tolist() == two["study_id"].tolist() and len(two) == 5
    for path in one["path"]:
        assert np.abs(read_scan(single / path).counts - read_scan(sharded / path).counts).max() <= 1


def test_with_worker_processes_the_main_process_never_loads_torch(model_dir, tmp_path):
    out = tmp_path / "synth"
    script = f"""
import sys
from synthscan.cli import main
code = main(["sample", "--model", {str(model_dir)!r}, "--condition", "normal", "-n", "6", "--batch-size", "2",
             "--workers", "2", "--out", {str(out)!r}, "--quiet"])
print("exit", code, "torch loaded", "torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 scans written" in result.stdout and "exit 0 torch loaded False" in result.stdout
    assert len(read_manifest(out / "manifest.csv")) == 6 and (out / "contact_sheet.png").is_file()


def test_without_model_the_bundled_default_model_is_used(tmp_path):
    import hashlib

    from synthscan.sample import DEFAULT_MODEL

    weights = DEFAULT_MODEL / "model.safetensors"
    assert weights.stat().st_size < 50e6 and (DEFAULT_MODEL / "README.md").is_file()
    assert main(["sample", "--condition", "amyloidosis", "--grade", "3", "-n", "2", "--matrix", "512x128",
                 "--out", str(tmp_path), "--quiet"]) == 0
    frame = read_manifest(tmp_path / "manifest.csv")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (frame["source"] == digest).all() and frame["study_id"][0].startswith(f"syn-{digest[:8]}-amyloidosis-g3-")
    scan = read_scan(tmp_path / frame["path"][0])
    assert scan.shape == (512, 128) and 1e6 < scan.total_counts < 2e7
