"""synthscan.sample on a tiny random model: seeds, batch invariance, layout, manifest, resume, bad input."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch

from synthscan.errors import BadInputError
from synthscan.io.dicom import read_scan
from synthscan.io.manifest import read_manifest
from synthscan.model.tiny import tiny_model
from synthscan.sample import SampleRequest, sample


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_model(seed=1).save_pretrained(folder)
    return folder


def _counts(folder: Path, name: str, seed: int) -> np.ndarray:
    return read_scan(folder / name / f"{seed:06d}.dcm").counts


def test_same_seed_same_scan_whatever_the_batch_size(model_dir, tmp_path):
    sample(SampleRequest("metastasis", 5, tmp_path / "b1", seed=10, batch_size=1, workers=1), model_dir, progress=False)
    sample(SampleRequest("metastasis", 5, tmp_path / "b4", seed=10, batch_size=4, workers=1), model_dir, progress=False)
    sample(SampleRequest("metastasis", 2, tmp_path / "tail", seed=13, batch_size=2), model_dir, progress=False)
    for seed in range(10, 15):
        a, b = _counts(tmp_path / "b1", "metastasis", seed), _counts(tmp_path / "b4", "metastasis", seed)
        assert np.abs(a - b).max() <= 1
        assert a.sum() > 0 and np.array_equal(a, np.round(a))
    for seed in (13, 14):  # scan i of a run uses seed --seed + i
        assert np.abs(_counts(tmp_path / "b1", "metastasis", seed) - _counts(tmp_path / "tail", "metastasis", seed)).max() <= 1
    assert not np.array_equal(_counts(tmp_path / "b1", "metastasis", 10), _counts(tmp_path / "b1", "metastasis", 11))


def test_worker_processes_write_the_scans_and_manifest_of_one_process(model_dir, tmp_path):
    one = sample(SampleRequest("normal", 7, tmp_path / "one", seed=2, batch_size=2, workers=1), model_dir, progress=False)
    three = sample(SampleRequest("normal", 7, tmp_path / "three", seed=2, batch_size=2, workers=3), model_dir,
                   progress=False)
    assert (one.written, three.written, three.skipped) == (7, 7, 0)
    a, b = read_manifest(tmp_path / "one" / "manifest.csv"), read_manifest(tmp_path / "three" / "manifest.csv")
    assert a["study_id"].tolist() == b["study_id"].tolist() and b["seed"].tolist() == list(range(2, 9))
    for seed in range(2, 9):
        assert np.abs(_counts(tmp_path / "one", "normal", seed) - _counts(tmp_path / "three", "normal", seed)).max() <= 1
    assert not list((tmp_path / "three").glob(".manifest-part-*"))


def test_default_worker_count_is_one_per_core_with_four_batches_each(monkeypatch, tmp_path):
    from synthscan.sample import _local_workers

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert _local_workers(SampleRequest("normal", 16, tmp_path)) == 1  # quick runs stay in one process
    assert _local_workers(SampleRequest("normal", 255, tmp_path, batch_size=32)) == 1
    assert _local_workers(SampleRequest("normal", 256, tmp_path, batch_size=32)) == 2
    assert _local_workers(SampleRequest("normal", 5000, tmp_path, workers=3)) == 3
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert _local_workers(SampleRequest("normal", 5000, tmp_path)) == 8


def test_a_failing_worker_fails_the_run_and_a_rerun_finishes_it(model_dir, tmp_path):
    (tmp_path / "normal" / "000004.dcm").mkdir(parents=True)  # scan 4 (worker 0 of 2) cannot be written
    with pytest.raises(OSError):
        sample(SampleRequest("normal", 6, tmp_path, seed=0, batch_size=1, workers=2), model_dir, progress=False)
    assert not (tmp_path / "manifest.csv").exists()
    assert (tmp_path / "normal" / "000005.dcm").is_file()  # worker 1 finished its scans
    (tmp_path / "normal" / "000004.dcm").rmdir()
    result = sample(SampleRequest("normal", 6, tmp_path, seed=0, batch_size=1, workers=2), model_dir, progress=False)
    assert (result.written, result.skipped) == (1, 5)  # only the failed scan is made again
    assert len(read_manifest(tmp_path / "manifest.csv")) == 6


def test_layout_manifest_and_provenance(model_dir, tmp_path):
    out = tmp_path / "out"
    result = sample(SampleRequest("amyloidosis", 3, out, seed=7, grade=3, formats=("dicom", "png"), matrix=(128, 32)),
                    model_dir, progress=False)
    assert result.written == 3 and result.skipped == 0
    files = sorted(p.name for p in (out / "amyloidosis-g3").iterdir())
    assert files == ["000007.dcm", "000007.png", "000008.dcm", "000008.png", "000009.dcm", "000009.png"]
    assert (out / "contact_sheet.png").is_file()
    frame = read_manifest(out / "manifest.csv")
    h8 = result.model_hash[:8]
    assert frame["study_id"].tolist() == [f"syn-{h8}-amyloidosis-g3-{s:06d}" for s in (7, 8, 9)]
    assert (frame["amyloid_grade"] == 3).all() and (frame["metastasis"] == 0).all()
    assert (frame["synthetic"] == 1).all() and (frame["source"] == result.model_hash).all()
    assert frame["seed"].tolist() == [7, 8, 9] and (frame["condition"] == "amyloidosis").all()
    assert (frame["guidance_scale"] == 1.0).all() and (frame["steps"].astype(int) == 4).all()
    assert (frame["rows"] == 128).all() and (frame["cols"] == 32).all()
    scan = read_scan(out / frame["path"][0])
    assert scan.shape == (128, 32) and scan.pixel_spacing_mm == pytest.approx((64 * 9.6 / 128, 16 * 9.6 / 32))
    assert frame["total_counts"][0] == pytest.approx(scan.total_counts)
    import pydicom

    ds = pydicom.dcmread(out / frame["path"][0])
    assert "DERIVED" in ds.ImageType and "SYNTHETIC" in ds.ImageComments and h8 in ds.ImageComments
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientID == frame["study_id"][0]


def test_amyloidosis_without_grade_draws_grades_2_and_3(model_dir, tmp_path):
    sample(SampleRequest("amyloidosis", 12, tmp_path, seed=0, batch_size=5), model_dir, progress=False)
    frame = read_manifest(tmp_path / "manifest.csv")
    assert set(frame["amyloid_grade"]) == {2, 3}  # tiny model: 3 grade-2 and 7 grade-3 training scans
    assert all("-amyloidosis-0000" in s for s in frame["study_id"])


def test_rerun_appends_unique_rows_and_resumes(model_dir, tmp_path):
    sample(SampleRequest("normal", 3, tmp_path, seed=0), model_dir, progress=False)
    first = _counts(tmp_path, "normal", 1)
    (tmp_path / "normal" / "000001.dcm").unlink()  # as if the run had been killed before this scan
    result = sample(SampleRequest("normal", 4, tmp_path, seed=0), model_dir, progress=False)
    assert (result.written, result.skipped) == (2, 2)
    assert np.abs(_counts(tmp_path, "normal", 1) - first).max() <= 1
    sample(SampleRequest("metastasis", 2, tmp_path, seed=0), model_dir, progress=False)
    frame = read_manifest(tmp_path / "manifest.csv")
    assert len(frame) == 6 and frame["study_id"].is_unique
    assert sorted(frame["condition"].value_counts().items()) == [("metastasis", 2), ("normal", 4)]
    assert not list(tmp_path.glob(".manifest-part-*"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(condition="tumour"), "unknown condition"),
    (dict(condition="normal", grade=2), "applies to amyloidosis only"),
    (dict(condition="amyloidosis", grade=4), "amyloid grade"),
    (dict(n=0), "n must be >= 1"),
    (dict(formats=("jpeg",)), "format"),
    (dict(steps=0), "steps"),
    (dict(negative_condition="normal"), "other than the condition sampled"),
    (dict(negative_condition="amyloidosis"), "negative condition must be one of normal, metastasis"),
    (dict(negative_scale=-1.0), "negative scale must be >= 0"),
    (dict(guidance_interval=(5.0, 0.1)), "guidance interval must be LO,HI"),
    (dict(device="gpu"), "device must be cpu, cuda or cuda:N"),
    (dict(precision="fp16"), "precision must be fp32 or bf16"),
])
def test_bad_requests_are_refused(kwargs, message, tmp_path):
    arguments = dict(condition="normal", n=2, out=tmp_path / "out") | kwargs
    with pytest.raises(BadInputError, match=message):
        SampleRequest(**arguments)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_anything_is_written(model_dir, tmp_path):
    with pytest.raises(BadInputError, match="--device cuda: no CUDA device is available"):
        sample(SampleRequest("normal", 2, tmp_path / "out", device="cuda"), model_dir, progress=False)
    assert not (tmp_path / "out").exists()


def test_bf16_networks_give_nearly_the_fp32_scans_and_say_so(model_dir, tmp_path):
    """bf16 autocast (CPU here; the GPU path is the same code) changes expected counts by float rounding only."""
    for precision in ("fp32", "bf16"):
        sample(SampleRequest("metastasis", 3, tmp_path / precision, seed=4, precision=precision, workers=1),
               model_dir, progress=False)
    pairs = [(_counts(tmp_path / "fp32", "metastasis", seed), _counts(tmp_path / "bf16", "metastasis", seed))
             for seed in range(4, 7)]
    for a, b in pairs:
        assert a.sum() == pytest.approx(b.sum(), rel=0.01)  # the total comes from the seed, not the network
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert any(not np.array_equal(a, b) for a, b in pairs)  # the networks did run in bfloat16
    assert set(read_manifest(tmp_path / "bf16" / "manifest.csv")["precision"]) == {"bf16"}
    assert set(read_manifest(tmp_path / "fp32" / "manifest.csv")["device"]) == {"cpu"}


def test_cuda_processes_take_the_gpus_in_turn(monkeypatch):
    from synthscan.sample import _device, _local_workers

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert [_device("cuda", rank) for rank in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert _device("cuda:1", 0) == "cuda:1" and _device("cpu", 1) == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "1")  # a launched process: its local rank, not its global one
    assert _device("cuda", 6) == "cuda:1"
    request = SampleRequest("normal", 10_000, Path("out"), device="cuda")
    assert _local_workers(request) == 1
    assert _local_workers(SampleRequest("normal", 10_000, Path("out"), device="cuda", workers=4)) == 4


@pytest.mark.gpu
def test_cuda_bf16_sampling_matches_the_cpu_scans(tmp_path):
    """The bundled model on the GPU in bf16: same totals, nearly the same count pattern as on the CPU."""
    for device, precision in (("cpu", "fp32"), ("cuda", "bf16")):
        sample(SampleRequest("metastasis", 4, tmp_path / device, device=device, precision=precision), progress=False)
    for seed in range(4):
        a, b = _counts(tmp_path / "cpu", "metastasis", seed), _counts(tmp_path / "cuda", "metastasis", seed)
        assert a.sum() == pytest.approx(b.sum(), rel=0.01)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert set(read_manifest(tmp_path / "cuda" / "manifest.csv")["device"]) == {"cuda"}


def test_non_model_and_foreign_output_folders_are_refused(model_dir, tmp_path):
    with pytest.raises(BadInputError, match="not a synthscan model"):
        sample(SampleRequest("normal", 2, tmp_path / "out"), tmp_path, progress=False)
    assert not (tmp_path / "out").exists()
    other = tmp_path / "other-model"
    tiny_model(seed=2).save_pretrained(other)
    sample(SampleRequest("normal", 1, tmp_path / "out"), other, progress=False)
    before = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    with pytest.raises(BadInputError, match="another model"):
        sample(SampleRequest("normal", 2, tmp_path / "out"), model_dir, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == before


def test_single_view_model(tmp_path):
    tiny_model(views=("anterior",)).save_pretrained(tmp_path / "model")
    sample(SampleRequest("normal", 2, tmp_path / "out"), tmp_path / "model", progress=False)
    frame = read_manifest(tmp_path / "out" / "manifest.csv")
    assert (frame["views"] == "anterior").all()
    assert read_scan(tmp_path / "out" / frame["path"][0], views=("anterior",)).counts.shape == (1, 64, 16)


def test_sampling_code_never_touches_the_phantom_or_training_data():
    """sample and the model package import nothing from synthscan.phantom or the training code."""
    root = Path(__file__).parents[2] / "synthscan"
    files = [root / "sample.py", root / "commands" / "sample.py", *sorted((root / "model").glob("*.py"))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("synthscan.phantom", "synthscan.train", "synthscan.io.manifest_")), (path, name)
                assert "phantom" not in name, (path, name)


def test_manifest_rows_carry_every_design_column(model_dir, tmp_path):
    from synthscan.io.manifest import COLUMNS

    sample(SampleRequest("normal", 1, tmp_path), model_dir, progress=False)
    header = pd.read_csv(tmp_path / "manifest.csv", nrows=0).columns.tolist()
    assert header[: len(COLUMNS)] == list(COLUMNS) and {"steps", "solver"} <= set(header)


def test_per_condition_guidance_is_the_default_and_an_explicit_scale_wins(tmp_path):
    model = tiny_model(seed=1)
    model.info["sampler"] = {**model.info["sampler"], "condition_guidance": {"metastasis": 3.0}}
    folder = model.save_pretrained(tmp_path / "model")
    runs = {"default": ("metastasis", None), "explicit-3": ("metastasis", 3.0), "explicit-1": ("metastasis", 1.0),
            "normal": ("normal", None)}
    for name, (condition, scale) in runs.items():
        sample(SampleRequest(condition, 2, tmp_path / name, seed=4, guidance_scale=scale, workers=1), folder,
               progress=False)
    guidance = {name: read_manifest(tmp_path / name / "manifest.csv")["guidance_scale"].astype(float).tolist()
                for name in runs}
    assert guidance == {"default": [3.0, 3.0], "explicit-3": [3.0, 3.0], "explicit-1": [1.0, 1.0], "normal": [1.0, 1.0]}
    for seed in (4, 5):
        default = _counts(tmp_path / "default", "metastasis", seed)
        assert np.abs(default - _counts(tmp_path / "explicit-3", "metastasis", seed)).max() <= 1
        assert np.abs(default - _counts(tmp_path / "explicit-1", "metastasis", seed)).max() > 1


def test_amyloid_grades_drawn_in_one_batch_keep_their_own_guidance(tmp_path):
    model = tiny_model(seed=1)
    model.info["sampler"] = {**model.info["sampler"], "condition_guidance": {"amyloidosis": 2.0, "amyloidosis-g3": 5.0}}
    folder = model.save_pretrained(tmp_path / "model")
    runs = {"drawn": {"batch_size": 8}, "one-by-one": {"batch_size": 1}, "all-at-2": {"guidance_scale": 2.0}}
    for name, options in runs.items():
        sample(SampleRequest("amyloidosis", 8, tmp_path / name, seed=0, workers=1, **options), folder, progress=False)
    frame = read_manifest(tmp_path / "drawn" / "manifest.csv")
    assert set(frame["amyloid_grade"]) == {2, 3}
    assert (frame["guidance_scale"].astype(float) == frame["amyloid_grade"].map({2: 2.0, 3: 5.0})).all()
    assert set(read_manifest(tmp_path / "all-at-2" / "manifest.csv")["guidance_scale"].astype(float)) == {2.0}
    for seed, grade in zip(frame["seed"].astype(int), frame["amyloid_grade"]):
        drawn = _counts(tmp_path / "drawn", "amyloidosis", seed)
        assert np.abs(drawn - _counts(tmp_path / "one-by-one", "amyloidosis", seed)).max() <= 1
        difference = np.abs(drawn - _counts(tmp_path / "all-at-2", "amyloidosis", seed)).max()
        assert difference <= 1 if grade == 2 else difference > 1


def test_the_models_negative_condition_is_the_default_and_can_be_turned_off(tmp_path):
    model = tiny_model(seed=1)
    model.info["sampler"] = {**model.info["sampler"], "guidance_scale": 2.0,
                             "negative_condition": {"normal": "metastasis"}, "negative_scale": 1.5}
    folder = model.save_pretrained(tmp_path / "model")
    runs = {"default": {}, "explicit": dict(negative_condition="metastasis", negative_scale=1.5),
            "off": dict(negative_condition="none"), "zero": dict(negative_scale=0.0)}
    for name, options in runs.items():
        sample(SampleRequest("normal", 2, tmp_path / name, seed=4, workers=1, **options), folder, progress=False)
    recorded = {name: read_manifest(tmp_path / name / "manifest.csv")[["negative_condition", "negative_scale"]]
                .astype(str).drop_duplicates().values.tolist() for name in runs}
    assert recorded == {"default": [["metastasis", "1.5"]], "explicit": [["metastasis", "1.5"]],
                        "off": [["none", "0.0"]], "zero": [["none", "0.0"]]}
    assert "negative_condition=metastasis" in str(pydicom.dcmread(tmp_path / "default" / "normal" / "000004.dcm",
                                                                  stop_before_pixels=True).ImageComments)
    for seed in (4, 5):
        default = _counts(tmp_path / "default", "normal", seed)
        assert np.abs(default - _counts(tmp_path / "explicit", "normal", seed)).max() <= 1
        assert np.abs(_counts(tmp_path / "off", "normal", seed) - _counts(tmp_path / "zero", "normal", seed)).max() <= 1
        assert np.abs(default - _counts(tmp_path / "off", "normal", seed)).max() > 1
    with pytest.raises(BadInputError, match="needs a negative condition"):  # the model has none for metastasis
        sample(SampleRequest("metastasis", 1, tmp_path / "bad", negative_scale=2.0, workers=1), folder, progress=False)
    assert not (tmp_path / "bad").exists()


def test_guidance_interval_is_the_models_default_and_recorded(tmp_path):
    model = tiny_model(seed=1)
    model.info["sampler"] = {**model.info["sampler"], "guidance_scale": 3.0, "guidance_interval": [0.0, 1.0]}
    folder = model.save_pretrained(tmp_path / "model")
    runs = {"default": None, "all": (0.0, float("inf")), "wide": (0.0, 1e3)}  # sigma_max 80: wide = all
    for name, interval in runs.items():
        sample(SampleRequest("metastasis", 2, tmp_path / name, seed=4, workers=1, guidance_interval=interval), folder,
               progress=False)
    recorded = {name: set(read_manifest(tmp_path / name / "manifest.csv")["guidance_interval"]) for name in runs}
    assert recorded == {"default": {"0-1"}, "all": {"all"}, "wide": {"0-1000"}}
    for seed in (4, 5):
        everywhere = _counts(tmp_path / "all", "metastasis", seed)
        assert np.abs(everywhere - _counts(tmp_path / "wide", "metastasis", seed)).max() <= 1
        assert np.abs(everywhere - _counts(tmp_path / "default", "metastasis", seed)).max() > 1
