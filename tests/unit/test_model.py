"""Generator building blocks: config, canonical grid, intensity transform, EDM, samplers, save/load."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from synthscan.config import TrainConfig, load_config, parse_set, to_toml
from synthscan.errors import BadInputError
from synthscan.model.conditions import class_for, class_from_labels, labels_for
from synthscan.model.guidance import Guidance
from synthscan.model.guidance import resolve as resolve_guidance
from synthscan.model.pipeline import SynthscanModel, sample_noise
from synthscan.model.precond import EDMDenoiser, karras_sigmas
from synthscan.model.sampler import guided, sample_dpmpp_2m, sample_heun
from synthscan.model.tiny import tiny_model
from synthscan.preprocess import canonical_counts, expected_counts, from_network, parse_matrix, to_network
from synthscan.scan import Scan


# ---------------------------------------------------------------------------------------------- config

def test_config_precedence_and_roundtrip(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("seed = 3\n[train_denoiser]\nsteps = 11\nlr = 0.5\n")
    extra = tmp_path / "extra.toml"
    extra.write_text("[train_denoiser]\nsteps = 12\n")
    config = load_config(recipe, extra, parse_set(["train_denoiser.lr=0.25", "sampler.solver=heun",
                                                   "sampler.condition_guidance.metastasis=8",
                                                   "sampler.negative_condition.normal=metastasis"]))
    assert (config.seed, config.train_denoiser.steps, config.train_denoiser.lr) == (3, 12, 0.25)
    assert config.sampler.solver == "heun" and config.train_autoencoder == TrainConfig().train_autoencoder
    assert config.sampler.condition_guidance == {"metastasis": 8.0}
    assert config.sampler.negative_condition == {"normal": "metastasis"}
    again = tmp_path / "again.toml"
    again.write_text(to_toml(config))
    assert load_config(again) == config


@pytest.mark.parametrize("text, message", [
    ("[train_denoiser]\nstepz = 3\n", "recipe.toml: train_denoiser: stepz: unknown key"),
    ("colour = 1\n", "recipe.toml: colour: unknown key"),
    ("[data]\nrows = 'many'\n", "data: rows: expected int"),
    ("[sampler]\nsolver = 'euler'\n", "sampler.solver must be"),
    ("[data]\nrows = 250\n", "divisible"),
    ("[sampler]\ncondition_guidance = {tumour = 3}\n", "condition_guidance takes normal, metastasis, amyloidosis"),
    ("[sampler]\ncondition_guidance = {amyloidosis-g4 = 3}\n", "amyloidosis-g1, amyloidosis-g2, amyloidosis-g3"),
    ("[sampler]\ncondition_guidance = {metastasis = 'high'}\n", "condition_guidance: expected dict"),
    ("[sampler]\nnegative_condition = {normal = 'normal'}\n", "negative_condition maps .* to another condition"),
    ("[sampler]\nnegative_condition = {normal = 'amyloidosis'}\n", "of normal, metastasis"),
    ("[sampler]\nnegative_condition = {normal = 2}\n", "negative_condition: expected dict"),
    ("[sampler]\nnegative_scale = -1\n", "negative_scale must be >= 0"),
    ("[sampler]\nguidance_interval = [5, 0.1]\n", "guidance_interval must be"),
    ("[sampler]\nguidance_interval = ['low', 1]\n", "guidance_interval: expected tuple"),
    ("[autoencoder]\ndecoder_blocks = 2\nrefined_decoder_blocks = 1\n", "refined_decoder_blocks must be 0 or >= "),
    ("[train_decoder]\ncrop_rows = 20\n", "train_decoder.crop_rows=20 must be 0 or a multiple of 8"),
])
def test_config_errors_name_the_file_and_key(tmp_path, text, message):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(text)
    with pytest.raises(BadInputError, match=message):
        load_config(recipe)


def test_shipped_recipes_load():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[2] / "recipes").glob("*.toml"))
    assert {"default-cpu.toml", "paper.toml", "smoke.toml"} <= {p.name for p in recipes}
    for recipe in recipes:
        load_config(recipe)


# ---------------------------------------------------------------------------------------------- preprocess

def test_canonical_counts_preserve_totals_for_block_and_odd_matrices(rng):
    counts = rng.poisson(5.0, size=(2, 1024, 256)).astype(np.float32)
    scan = Scan(counts, (2.4, 2.4))
    block = canonical_counts(scan, 256, 64)
    assert block.shape == (2, 256, 64)
    assert block.sum(axis=(1, 2)) == pytest.approx(counts.sum(axis=(1, 2)), rel=1e-6)
    assert block[0, 0, 0] == counts[0, :4, :4].sum()
    odd = canonical_counts(Scan(counts[:, :1000, :250], (2.4, 2.4)), 256, 64)
    assert odd.sum(axis=(1, 2)) == pytest.approx(counts[:, :1000, :250].sum(axis=(1, 2)), rel=1e-4)


def test_intensity_transform_inverts_up_to_scale(rng):
    counts = torch.from_numpy(rng.poisson(20.0, size=(3, 2, 32, 8)).astype(np.float32))
    y = to_network(counts)
    assert float(y.min()) >= -1
    back = from_network(y)
    ratio = back / (counts / counts.sum(dim=(1, 2, 3), keepdim=True))
    finite = counts > 0
    assert torch.allclose(ratio[finite] / ratio[finite].mean(), torch.ones(int(finite.sum())), atol=1e-4)
    assert float(from_network(torch.full((1,), -3.0))) == 0.0  # below -1 means no counts


def test_expected_counts_hit_totals_at_any_matrix():
    y = torch.rand(2, 2, 32, 8) * 2 - 1
    for matrix in ((32, 8), (128, 32), (100, 30)):
        expected = expected_counts(y, [1e5, 3e5], matrix)
        assert expected.shape == (2, 2, *matrix)
        assert expected.sum(dim=(1, 2, 3)).tolist() == pytest.approx([1e5, 3e5], rel=1e-5)
        assert float(expected.min()) >= 0


def test_clinical_matrix_block_sums_give_back_the_network_pattern():
    """Network grid -> clinical matrix -> canonical block sums is the identity (no blur of one-pixel foci)."""
    y = torch.full((1, 2, 32, 8), -0.5)
    y[0, 0, 10, 3] = 1.0  # a one-pixel hot spot
    grid = expected_counts(y, [1e5], (32, 8))
    for matrix in ((128, 32), (64, 16)):
        clinical = expected_counts(y, [1e5], matrix)[0].double().numpy()
        scan = Scan(clinical, (1.0, 1.0))
        assert canonical_counts(scan, 32, 8) == pytest.approx(grid[0].numpy(), rel=1e-4)
        assert float(clinical.min()) >= 0
    plain = torch.nn.functional.interpolate(grid, size=(128, 32), mode="bilinear", align_corners=False) / 16
    plain_peak = canonical_counts(Scan(plain[0].double().numpy(), (1.0, 1.0)), 32, 8)[0, 10, 3]
    assert plain_peak < 0.7 * float(grid[0, 0, 10, 3])  # what plain bilinear resampling would have lost


def test_parse_matrix():
    assert parse_matrix("1024x256") == (1024, 256)
    for bad in ("1024", "ax3", "0x0", "99999x2"):
        with pytest.raises(BadInputError):
            parse_matrix(bad)


# ---------------------------------------------------------------------------------------------- conditions

def test_condition_classes_roundtrip():
    assert class_from_labels(0, 0) == class_for("normal") == 1
    assert class_from_labels(1, 0) == class_for("metastasis") == 2
    assert [class_from_labels(0, g) for g in (1, 2, 3)] == [class_for("amyloidosis", g) for g in (1, 2, 3)] == [3, 4, 5]
    assert class_from_labels(1, 3) == class_from_labels(None, 0) == class_from_labels(float("nan"), 0) == 0
    assert labels_for(5) == {"condition": "amyloidosis", "metastasis": 0, "amyloid_grade": 3}
    for condition, grade in (("tumour", None), ("normal", 2), ("amyloidosis", 4)):
        with pytest.raises(BadInputError):
            class_for(condition, grade)


# ---------------------------------------------------------------------------------------------- EDM + samplers

def test_edm_denoiser_is_identity_at_zero_noise():
    class Zero(torch.nn.Module):
        def forward(self, x, t, class_labels=None):
            return type("Out", (), {"sample": torch.full_like(x, 7.0)})()

    denoiser = EDMDenoiser(Zero(), sigma_data=0.5)
    x = torch.randn(3, 2, 4, 4)
    assert torch.allclose(denoiser(x, torch.full((3,), 1e-8), torch.zeros(3, dtype=torch.long)), x, atol=1e-6)
    # at large sigma the skip vanishes and the output is sigma_data * F
    assert torch.allclose(denoiser(x, torch.full((3,), 1e6), torch.zeros(3, dtype=torch.long)),
                          torch.full_like(x, 3.5), atol=1e-4)


def test_karras_sigmas():
    sigmas = karras_sigmas(10, 0.002, 80.0, 7.0)
    assert len(sigmas) == 11 and float(sigmas[-1]) == 0
    assert float(sigmas[0]) == pytest.approx(80.0) and float(sigmas[-2]) == pytest.approx(0.002)
    assert (sigmas[:-1].diff() < 0).all()


@pytest.mark.parametrize("solver", [sample_dpmpp_2m, sample_heun])
def test_samplers_solve_the_gaussian_probability_flow_ode_at_second_order(solver):
    """Data N(0, s^2): the exact denoiser is x s^2/(s^2 + sigma^2) and the ODE maps x_T to x_T s/sqrt(s^2 + T^2)."""
    s, sigma_max = 0.7, 80.0
    x_t = torch.randn(1000, 1, 1, 1, generator=torch.Generator().manual_seed(0)) * sigma_max
    exact = x_t * s / math.sqrt(s ** 2 + sigma_max ** 2)

    def error(steps):
        result = solver(lambda x, sigma: x * s ** 2 / (s ** 2 + sigma ** 2), x_t, karras_sigmas(steps, 0.002, sigma_max))
        return float((result - exact).abs().max() / exact.abs().max())

    coarse, fine = error(40), error(80)
    assert fine < 0.005
    assert 3.0 < coarse / fine < 5.5  # halving the step divides the error by ~4


def _class_denoiser(calls):
    """A denoiser whose prediction is the class id: D_null = 0, D_1 = 1, D_2 = 2."""

    def denoiser(x, sigma, labels):
        calls.append(labels.tolist())
        return labels.to(torch.float32).reshape(-1, 1).expand(x.shape[0], x.shape[1])

    return denoiser


def test_guidance_mixes_conditional_and_null():
    calls = []
    denoiser, x, labels = _class_denoiser(calls), torch.zeros(2, 3), torch.tensor([2, 2])
    assert torch.allclose(guided(denoiser, labels, Guidance(3.0))(x, 1.0), torch.full((2, 3), 6.0))
    assert calls[-1] == [2, 2, 0, 0]  # one batched pass
    assert torch.allclose(guided(denoiser, labels, Guidance(1.0))(x, 1.0), torch.full((2, 3), 2.0))
    assert calls[-1] == [2, 2]  # w = 1: no null pass


def test_guidance_settings_take_the_models_defaults_unless_overridden():
    sampler = {"guidance_scale": 5.0, "condition_guidance": {"metastasis": 8.0}, "guidance_interval": [0.1, 5.0],
               "negative_condition": {"normal": "metastasis"}, "negative_scale": 2.0}
    assert resolve_guidance(sampler, "normal", 3.0, "none", interval=(0.0, math.inf)) == (Guidance(3.0), None)
    assert resolve_guidance(sampler, "normal", negative_scale=1.0) == (
        Guidance(5.0, class_for("metastasis"), 1.0, (0.1, 5.0)), "metastasis")
    assert resolve_guidance(sampler, "metastasis", negative="normal", negative_scale=0.5, interval=(1.0, 2.0)) == (
        Guidance(8.0, class_for("normal"), 0.5, (1.0, 2.0)), "normal")
    graded = {**sampler, "condition_guidance": {"amyloidosis": 4.0, "amyloidosis-g3": 1.5}}
    assert [resolve_guidance(graded, "amyloidosis", grade=g)[0].scale for g in (None, 1, 2, 3)] == [4.0, 4.0, 4.0, 1.5]
    assert resolve_guidance(graded, "amyloidosis", 2.0, grade=3)[0].scale == 2.0  # an explicit scale wins
    assert resolve_guidance({**graded, "condition_guidance": {"amyloidosis-g3": 1.5}}, "amyloidosis",
                            grade=2)[0].scale == 5.0  # no key for the grade or condition: guidance_scale
    with pytest.raises(BadInputError, match="needs a negative condition"):
        resolve_guidance(sampler, "metastasis", negative_scale=1.0)
    with pytest.raises(BadInputError, match="needs --negative-scale > 0"):
        resolve_guidance({**sampler, "negative_scale": 0.0}, "metastasis", negative="normal")


def test_negative_guidance_pushes_away_from_the_negative_class():
    calls = []
    denoiser, x, labels = _class_denoiser(calls), torch.zeros(2, 3), torch.tensor([2, 2])
    away = guided(denoiser, labels, Guidance(3.0, negative_class=1, negative_scale=0.5))
    assert torch.allclose(away(x, 1.0), torch.full((2, 3), 3.0 * 2 - 0.5 * 1))  # D_0 + w (D_2 - D_0) - v (D_1 - D_0)
    assert calls[-1] == [2, 2, 0, 0, 1, 1]  # one batched pass of three
    assert torch.allclose(guided(denoiser, labels, Guidance(1.0, 1, 0.5))(x, 1.0), torch.full((2, 3), 1.5))
    assert torch.allclose(guided(denoiser, labels, Guidance(3.0, 1, 0.0))(x, 1.0), torch.full((2, 3), 6.0))
    assert calls[-1] == [2, 2, 0, 0]


def test_guidance_applies_only_inside_its_noise_interval():
    calls = []
    denoise = guided(_class_denoiser(calls), torch.tensor([2]), Guidance(3.0, 1, 0.5, interval=(0.1, 5.0)))
    x = torch.zeros(1, 3)
    outputs = {sigma: float(denoise(x, sigma)[0, 0]) for sigma in (80.0, 5.0, 0.5, 0.1, 0.01)}
    assert outputs == {80.0: 2.0, 5.0: 5.5, 0.5: 5.5, 0.1: 2.0, 0.01: 2.0}  # (lo, hi]: plain conditional outside
    assert [len(c) for c in calls] == [1, 3, 3, 1, 1]


def test_noise_depends_on_the_seed_only():
    a = sample_noise([5, 6, 7], (2, 4, 2))
    b = sample_noise([7], (2, 4, 2))
    assert torch.equal(a[2], b[0]) and not torch.equal(a[0], a[1])


# ---------------------------------------------------------------------------------------------- save / load

def test_save_load_roundtrip_hash_and_fp16(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "m32")
    loaded = SynthscanModel.from_pretrained(tmp_path / "m32")
    assert loaded.hash == hashlib.sha256((tmp_path / "m32" / "model.safetensors").read_bytes()).hexdigest()
    args = ([0, 1], [1, 2], [2e4, 2e4], (64, 16), Guidance(2.0))
    assert torch.equal(model.expected_counts(*args), loaded.expected_counts(*args))
    model.save_pretrained(tmp_path / "m16", dtype="float16")
    half = SynthscanModel.from_pretrained(tmp_path / "m16")
    assert half.hash != loaded.hash
    assert (tmp_path / "m16" / "model.safetensors").stat().st_size < (tmp_path / "m32" / "model.safetensors").stat().st_size
    relative = (half.expected_counts(*args) - loaded.expected_counts(*args)).abs().max() / loaded.expected_counts(*args).max()
    assert float(relative) < 0.05


def test_from_pretrained_refuses_non_models(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        SynthscanModel.from_pretrained(tmp_path / "missing")
    with pytest.raises(BadInputError, match="not a synthscan model folder"):
        SynthscanModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "something-else"}')
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(BadInputError, match="not a synthscan model config"):
        SynthscanModel.from_pretrained(tmp_path)


def test_the_bundled_model_was_trained_by_the_default_cpu_recipe():
    """The model card's recipe is the one the shipped weights record (sampler defaults may be tuned after)."""
    import json
    from pathlib import Path

    from synthscan.config import to_dict
    from synthscan.sample import DEFAULT_MODEL

    recorded = json.loads((DEFAULT_MODEL / "config.json").read_text())["training"]
    recipe = json.loads(json.dumps(to_dict(load_config(Path(__file__).parents[2] / "recipes" / "default-cpu.toml"))))
    sampler = recipe.pop("sampler")
    recorded.pop("sampler")
    assert recorded == recipe
    from synthscan.model.pipeline import SynthscanModel

    model = SynthscanModel.from_pretrained(DEFAULT_MODEL)  # the recipe's sampler defaults are the model's
    assert model.info["sampler"] == sampler
    assert [resolve_guidance(model.info["sampler"], c) for c in ("normal", "metastasis", "amyloidosis")] == [
        (Guidance(5.0, class_for("metastasis"), 1.0, (0.1, 5.0)), "metastasis"),
        (Guidance(8.0, None, 0.0, (0.1, 5.0)), None), (Guidance(4.0, None, 0.0, (0.1, 5.0)), None)]
    assert [resolve_guidance(model.info["sampler"], "amyloidosis", grade=g)[0].scale for g in (1, 2, 3)] == [4.0, 4.0, 1.5]
