"""Classifier inputs: exact resampling, regions, normalisation, cache, and the checks on splits."""

import numpy as np
import pandas as pd
import pytest

from classify_toy import COLS, ROWS, SPACING_MM, make_cohort, spot_scan
from evaluation import data
from evaluation.data import (PreprocessSpec, load_grid_scans, normalise, refuse_overlap, refuse_synthetic,
                             region_box_mm, resample_counts, split_train_val, task_labels, to_grid)
from synthscan.errors import BadInputError
from synthscan.io.manifest import read_manifest


def test_resample_block_sums_exactly(rng):
    counts = rng.poisson(5.0, (2, 8, 4)).astype(np.float32)
    out = resample_counts(counts, (2.0, 2.0), (0.0, 16.0, 0.0, 8.0), (4, 2))
    np.testing.assert_allclose(out, counts.reshape(2, 4, 2, 2, 2).sum(axis=(2, 4)), rtol=1e-6)


def test_resample_preserves_counts_for_any_ratio_and_pads_outside(rng):
    counts = rng.poisson(3.0, (1, 37, 11)).astype(np.float32)
    inside = resample_counts(counts, (2.4, 2.4), (0.0, 37 * 2.4, 0.0, 11 * 2.4), (16, 5))
    assert inside.sum() == pytest.approx(counts.sum(), rel=1e-6)
    padded = resample_counts(counts, (2.4, 2.4), (-50.0, 37 * 2.4 + 50, -20.0, 11 * 2.4 + 20), (20, 8))
    assert padded.sum() == pytest.approx(counts.sum(), rel=1e-6)
    assert padded[:, 0].sum() == 0 and padded[:, :, 0].sum() == 0  # outside the image: zeros


def test_scanners_with_different_matrices_see_the_same_anatomy():
    """A 1024x256 / 2.4 mm scan and the same body at 512x128 / 4.8 mm give the same grid (the field is in mm)."""
    fine = np.zeros((1, 1024, 256), np.float32)
    fine[0, 400:420, 150:160] = 10.0
    coarse = fine.reshape(1, 512, 2, 128, 2).sum(axis=(2, 4))
    spec = PreprocessSpec(views=("anterior",), grid=(256, 64))
    a = resample_counts(fine, (2.4, 2.4), region_box_mm(fine, (2.4, 2.4), spec), spec.grid)
    b = resample_counts(coarse, (4.8, 4.8), region_box_mm(coarse, (4.8, 4.8), spec), spec.grid)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_to_grid_maps_pixel_centres():
    box = (0.0, ROWS * SPACING_MM[0], 0.0, COLS * SPACING_MM[1])
    # native pixels 0 and 1 fall into grid pixel 0 at half resolution: their shared edge is its centre
    np.testing.assert_allclose(to_grid((0.5, 0.5), SPACING_MM, box, (ROWS // 2, COLS // 2)), (0.0, 0.0), atol=1e-9)
    np.testing.assert_allclose(to_grid((ROWS - 1, COLS - 1), SPACING_MM, box, (ROWS, COLS)), (ROWS - 1, COLS - 1))


def test_normalise_is_scale_free_and_unit_mean_square(rng):
    counts = rng.poisson(4.0, (3, 2, 16, 8)).astype(np.float32)
    x = normalise(counts)
    np.testing.assert_allclose((x ** 2).mean(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(normalise(counts * 7), x, rtol=1e-5)
    import torch

    np.testing.assert_allclose(normalise(torch.from_numpy(counts)).numpy(), x, rtol=1e-5)


def test_regions_lie_in_the_chest_and_the_heart_box_leans_to_the_patients_left(rng):
    counts, _ = spot_scan(rng, 0)
    whole = region_box_mm(counts, SPACING_MM, PreprocessSpec(region="whole"))
    thorax = region_box_mm(counts, SPACING_MM, PreprocessSpec(region="thorax"))
    heart = region_box_mm(counts, SPACING_MM, PreprocessSpec(region="heart"))
    length = ROWS * SPACING_MM[0]
    assert whole == pytest.approx((0, length, 0, COLS * SPACING_MM[1]), abs=1e-6)
    assert 0.05 * length < thorax[0] < 0.2 * length and 0.35 * length < thorax[1] < 0.5 * length
    middle = COLS * SPACING_MM[1] / 2
    assert heart[3] - middle > middle - heart[2]  # the patient's left is at high columns


def test_cache_serves_second_load_without_reading(tmp_path, monkeypatch):
    manifest = make_cohort(tmp_path / "c", 4, seed=3)
    frame = read_manifest(manifest)
    spec = PreprocessSpec(grid=(32, 8))
    first = load_grid_scans(frame, spec, tmp_path / "cache", progress=False)
    import synthscan.io.dicom

    monkeypatch.setattr(synthscan.io.dicom, "read_scan", lambda *a, **k: pytest.fail("read the DICOM again"))
    second = load_grid_scans(frame, spec, tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(first.counts, second.counts)
    assert first.counts.shape == (4, 2, 32, 8)
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_cache_key_changes_with_grid_and_file(tmp_path):
    frame = read_manifest(make_cohort(tmp_path / "c", 2, seed=4))
    key = data._cache_key(frame, PreprocessSpec(grid=(32, 8)))
    assert key != data._cache_key(frame, PreprocessSpec(grid=(64, 16)))
    assert key != data._cache_key(frame, PreprocessSpec(grid=(32, 8), region="thorax"))
    target = tmp_path / "c" / frame["path"].iloc[0]
    target.write_bytes(target.read_bytes() + b"\0")
    assert key != data._cache_key(frame, PreprocessSpec(grid=(32, 8)))


def test_single_view_rows_refused_for_a_two_view_model(tmp_path):
    frame = read_manifest(make_cohort(tmp_path / "c", 2, views=("anterior",)))
    with pytest.raises(BadInputError, match="needs 'anterior\\+posterior'"):
        load_grid_scans(frame, PreprocessSpec(grid=(32, 8)), tmp_path / "cache", progress=False)
    single = load_grid_scans(frame, PreprocessSpec(views=("anterior",), grid=(32, 8)), tmp_path / "cache",
                             progress=False)
    assert single.counts.shape == (2, 1, 32, 8)


def _frame(patients, synthetic=None, labels=None):
    n = len(patients)
    return pd.DataFrame({"study_id": [f"s{i}" for i in range(n)], "patient_id": patients,
                         "metastasis": pd.array(labels if labels is not None else [i % 2 for i in range(n)],
                                                dtype="Int64"),
                         "synthetic": pd.array(synthetic if synthetic is not None else [0] * n, dtype="Int64")})


def test_refusals_name_the_problem():
    with pytest.raises(BadInputError, match="synthetic row.*test sets must hold real scans"):
        refuse_synthetic(_frame(["a", "b"], synthetic=[0, 1]), "t.csv", "test")
    with pytest.raises(BadInputError, match="leakage: 1 patient.*first: b"):
        refuse_overlap(["a", "b"], _frame(["b", "c"]), "t.csv", "test")
    refuse_overlap(["a"], _frame(["b", "c"]), "t.csv", "test")
    with pytest.raises(BadInputError, match="needs column 'metastasis'"):
        task_labels(_frame(["a", "b"], labels=[1, None]), "metastasis")
    with pytest.raises(BadInputError, match="unknown task"):
        task_labels(_frame(["a"]), "fracture")


def test_validation_split_is_grouped_real_only_and_keeps_synthetic_rows_in_training():
    patients = [f"p{i // 2}" for i in range(40)] + [f"syn{i}" for i in range(10)]
    frame = _frame(patients, synthetic=[0] * 40 + [1] * 10, labels=[(i // 2) % 2 for i in range(50)])
    train, val = split_train_val(frame, "metastasis", seed=0)
    assert len(train) + len(val) == len(frame)
    assert not set(train["patient_id"]) & set(val["patient_id"])
    assert (val["synthetic"] == 0).all() and (train["synthetic"] == 1).sum() == 10
    assert set(val["metastasis"]) == {0, 1}
    again, _ = split_train_val(frame, "metastasis", seed=0)
    assert list(again["study_id"]) == list(train["study_id"])
