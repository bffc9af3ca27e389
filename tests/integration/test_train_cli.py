"""``synthscan train`` end to end on a toy cohort: resume after kill -9 is bitwise, two real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from synthscan.model.tiny import toy_cohort

RECIPE = Path(__file__).parents[2] / "recipes" / "smoke.toml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return toy_cohort(tmp_path_factory.mktemp("toy"))


def _train_command(manifest, out, *extra):
    return [sys.executable, "-m", "synthscan", "train", "--recipe", str(RECIPE), "--data", str(manifest),
            "--out", str(out), "--set", "train_denoiser.steps=12", "--set", "train_perceptual.steps=12",
            "--set", "train_decoder.steps=12", *extra]


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(_train_command(cohort, out, "--quiet"), check=True, env=ENV, capture_output=True)
    return out


@pytest.mark.parametrize("stage", ["perceptual", "denoiser", "decoder"])  # middle stages (one with EMA), the last
def test_resume_after_kill_ends_bitwise_equal_to_an_uninterrupted_run(cohort, uninterrupted, stage, tmp_path):

    killed = tmp_path / "killed"
    process = subprocess.Popen(_train_command(cohort, killed), env=ENV, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL)
    seen = b""
    # checkpoint_every = 4: once the progress bar shows step 5 of the stage, checkpoint 4 exists and one more step ran
    while process.poll() is None:
        seen += os.read(process.stderr.fileno(), 4096)
        steps = [int(n) for n in re.findall(rb"training " + stage.encode() + rb":[^\r\n]*?\| *(\d+)/12", seen)]
        if steps and max(steps) >= 5:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert (killed / "checkpoints" / stage / "step-0000004").is_dir()
    assert not (killed / "model.safetensors").exists() and not (killed / f"{stage}.safetensors").exists()

    subprocess.run(_train_command(cohort, killed, "--quiet"), check=True, env=ENV, capture_output=True)
    expected, resumed = _weights(uninterrupted), _weights(killed)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert np.array_equal(expected[name], resumed[name]), name
    log = (killed / f"loss_{stage}.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == list(range(12))  # no duplicated or missing steps
    assert (killed / "loss.png").is_file() and (killed / "config.toml").is_file()
    assert (killed / "checkpoints" / stage / "step-0000004" / "config.toml").is_file()


def test_two_real_processes(cohort, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(29400 + os.getpid() % 500), "-m", "synthscan", "train", "--recipe", str(RECIPE), "--data",
               str(cohort), "--out", str(out), "--quiet"]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    log = json.loads((out / "run.json").read_text())
    assert log["num_processes"] == 2
    assert all(stage["num_processes"] == 2 for stage in log["stages"].values())
    from synthscan.model.pipeline import SynthscanModel

    model = SynthscanModel.from_pretrained(out)
    assert model.info["class_counts"]["metastasis"] == 6 and model.info["data"]["n_scans"] == 18


def test_rerun_with_another_config_and_bad_manifests_are_refused(cohort, tmp_path):
    from synthscan.cli import main

    out = tmp_path / "run"
    assert main(["train", "--recipe", str(RECIPE), "--data", str(cohort), "--out", str(out), "--quiet"]) == 0
    assert main(["train", "--recipe", str(RECIPE), "--data", str(cohort), "--out", str(out), "--quiet",
                 "--set", "seed=5"]) == 2
    unlabelled = tmp_path / "unlabelled.csv"
    pd.read_csv(cohort).drop(columns=["metastasis"]).to_csv(unlabelled, index=False)
    assert main(["train", "--recipe", str(RECIPE), "--data", str(unlabelled), "--out", str(tmp_path / "x"),
                 "--quiet"]) == 2
    assert not (tmp_path / "x").exists()
    assert main(["train", "--recipe", str(RECIPE), "--data", str(cohort), "--out", str(tmp_path / "y"),
                 "--set", "train_denoiser.stepz=3"]) == 2


def test_perceptual_stage_tunes_the_autoencoder_before_the_denoiser_and_the_decoder_stage_refines_after(uninterrupted):
    """The perceptual stage changes encoder and decoder, and the denoiser's latent statistics are those of the
    tuned encoder; the decoder stage then grows and trains the decoder alone, so the saved model keeps that
    encoder (and the denoiser's latents stay valid) with a deeper, retrained decoder."""
    import json

    import torch

    from synthscan.model.autoencoder import Autoencoder
    from synthscan.model.pipeline import SynthscanModel
    from synthscan.preprocess import to_network

    model = _weights(uninterrupted)
    stage_one = load_file(str(uninterrupted / "autoencoder.safetensors"))
    tuned = load_file(str(uninterrupted / "perceptual.safetensors"))
    assert tuned.keys() == stage_one.keys()
    for part in ("encoder.", "decoder."):
        assert any(not np.array_equal(tuned[name], stage_one[name]) for name in tuned if name.startswith(part)), part

    config = json.loads((uninterrupted / "config.json").read_text())["autoencoder"]
    assert config["decoder_blocks"] == 2  # smoke recipe: refined_decoder_blocks = 2, stage one had 1

    def autoencoder(weights, blocks):
        network = Autoencoder(**{**config, "decoder_blocks": blocks})
        network.load_state_dict({name: torch.from_numpy(value) for name, value in weights.items()})
        return network.eval()

    grown_tuned = autoencoder(tuned, 1).with_decoder_blocks(2).state_dict()
    refined = load_file(str(uninterrupted / "decoder.safetensors"))
    assert refined.keys() == grown_tuned.keys()
    assert all(np.array_equal(model[f"autoencoder.{name}"], value) for name, value in refined.items())
    assert all(np.array_equal(refined[name], grown_tuned[name].numpy()) for name in refined if name.startswith("encoder."))
    assert any(not np.array_equal(refined[name], grown_tuned[name].numpy()) for name in refined
               if name.startswith("decoder."))

    info = SynthscanModel.from_pretrained(uninterrupted).info
    images = to_network(torch.from_numpy(np.load(next((uninterrupted / "cache").glob("*.npz")))["canonical"]))

    def latent_mean(network):
        with torch.no_grad():
            return network.encode(images).mean(dim=(0, 2, 3)).numpy()

    assert np.allclose(info["latent_mean"], latent_mean(autoencoder(refined, 2)), atol=1e-5)
    assert not np.allclose(info["latent_mean"], latent_mean(autoencoder(stage_one, 1)), atol=1e-3)
    log = json.loads((uninterrupted / "run.json").read_text())
    assert list(log["stages"]) == ["autoencoder", "perceptual", "denoiser", "decoder"] and log["critic"]["epochs"] == 1
    assert (uninterrupted / "critic.safetensors").is_file()
    assert len(pd.read_csv(uninterrupted / "loss_perceptual.csv")) == 12
    assert len(pd.read_csv(uninterrupted / "loss_decoder.csv")) == 12
