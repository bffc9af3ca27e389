"""Grad-CAM (against the CAM identity), the pointing game and its chance level, overlays, a trained model."""

import json

import numpy as np
import pytest
import torch
from scipy import stats

from classify_toy import make_cohort
from evaluation.cam import (GradCAM, body_mask, grad_cam, map_peak, overlay_image, pointing_game,
                            poisson_binomial_tail)
from evaluation.classifier import ClassifierConfig, build_model, load_model
from evaluation.data import load_grid_scans, to_grid
from evaluation.training import train_run
from synthscan.errors import BadInputError
from synthscan.io.manifest import read_manifest


def test_grad_cam_equals_cam_for_a_global_average_pooling_network():
    """For features -> GAP -> linear, alpha_k = w_k / (h w): Grad-CAM is CAM (Zhou et al. 2016) up to scale."""
    torch.manual_seed(0)
    model = build_model(ClassifierConfig(arch="tiny", grid=(64, 16))).eval()
    x = torch.rand(3, 2, 64, 16)
    maps, _ = GradCAM(model)(x)
    with torch.no_grad():
        features = model.features(x)
        cam = torch.relu(torch.einsum("k,bkhw->bhw", model.head.weight[0], features))[:, None]
        cam = torch.nn.functional.interpolate(cam, size=(64, 16), mode="bilinear", align_corners=False)[:, 0]
        cam = cam / cam.amax(dim=(1, 2), keepdim=True)
    np.testing.assert_allclose(maps[:, 0], cam.numpy(), atol=1e-5)
    assert maps.shape == (3, 1, 64, 16) and maps.max() == pytest.approx(1.0)


def test_late_fusion_gives_one_map_per_view_and_hooks_are_removed():
    torch.manual_seed(0)
    model = build_model(ClassifierConfig(arch="tiny", fusion="views", task="amyloid_grade")).eval()
    maps, logits = GradCAM(model)(torch.rand(2, 2, 64, 16))
    assert maps.shape == (2, 2, 64, 16) and logits.shape == (2, 4)
    assert not model.features._forward_hooks


def test_poisson_binomial_tail_matches_the_binomial_and_brute_force():
    assert poisson_binomial_tail([0.2] * 10, 3) == pytest.approx(stats.binom.sf(2, 10, 0.2), rel=1e-12)
    p = [0.1, 0.5, 0.7]
    brute = sum(np.prod([pi if b else 1 - pi for pi, b in zip(p, bits)])
                for bits in np.ndindex(2, 2, 2) if sum(bits) >= 2)
    assert poisson_binomial_tail(p, 2) == pytest.approx(brute, rel=1e-12)


def test_pointing_game_hits_misses_and_chance():
    shape = (40, 10)
    body = np.ones(shape, bool)
    maps, targets = [], []
    for row in (5, 15, 25, 35):
        m = np.zeros((1, *shape))
        m[0, row, 4] = 1.0
        maps.append(m)
        targets.append([(row, 5)])  # 1 pixel away
    maps.append(np.zeros((1, *shape)))
    maps[-1][0, 0, 0] = 1
    targets.append([(39, 9)])  # far away: a miss
    targets.append([])  # no target: skipped
    maps.append(np.zeros((1, *shape)))
    result = pointing_game(maps, targets, [(10.0, 10.0)] * 6, [body] * 6, tolerance_mm=15.0)
    assert (result.hits, result.n) == (4, 5)
    # chance: pixels within 15 mm (1.5 px) of a target: a 3x3 block plus 4 pixels at distance... = 9 of 400
    corner = 4 / 400  # at the corner only 4 pixels are within 1.5 px
    assert result.chance_rate == pytest.approx((4 * 9 / 400 + corner) / 5)
    assert "4/5 hits" in result.summary() and result.p_value < 1e-5
    assert result.shuffled_rate == 0  # no peak hits another scan's target
    # only re-pairings that keep the four hitting scans in place reach 4 hits: 1 of 5! / 1! = 120
    assert result.shuffled_p_value == pytest.approx(1 / 120, abs=0.003)


def test_map_peak_and_body_mask():
    m = np.zeros((2, 8, 4))
    m[1, 6, 3] = 1.0
    assert map_peak(m) == (6, 3)
    counts = np.zeros((2, 8, 4))
    counts[:, 2:6, 1:3] = 10.0
    assert body_mask(counts).sum() == 8


def test_overlay_has_both_views_side_by_side(rng):
    counts = rng.poisson(5.0, (2, 64, 16)).astype(float)
    picture = overlay_image(counts, np.random.default_rng(0).random((1, 64, 16)), ("anterior", "posterior"),
                            "s1 score 0.9", points=[(10, 5)], scale=2)
    assert picture.size == ((16 * 2 + 2) * 2, 64 * 2 + 28)


def test_a_trained_model_points_at_planted_lesions_more_often_than_chance(tmp_path):
    """Planted bright spots on noise (tests/classify_toy.py); train, then Grad-CAM on held-out positives.

    Grad-CAM maps are coarse (the network's receptive field, not the lesion, sets their extent; occlusion
    localises these spots to one 4x4 block while Grad-CAM spreads over several), so on this 38 mm grid the
    tolerance is 250 mm; chance is computed at the same tolerance.
    """
    train = read_manifest(make_cohort(tmp_path / "train", 80, 0.5, seed=21))
    test = read_manifest(make_cohort(tmp_path / "test", 30, 1.0, seed=22, patient_prefix="t"))
    config = ClassifierConfig(arch="tiny", grid=(64, 16), batch_size=16, steps=60, eval_every=20, seed=0)
    train_run(config, train, None, tmp_path / "run", tmp_path / "cache", progress=False)
    model, _ = load_model(tmp_path / "run")
    scans = load_grid_scans(test, config.preprocess, tmp_path / "cache", progress=False)
    maps = grad_cam(model, scans.counts)
    lesions = json.loads((tmp_path / "test" / "lesions.json").read_text())
    targets, sizes = [], []
    for study, box, spacing in zip(test["study_id"], scans.boxes_mm, scans.spacing_mm):
        targets.append([to_grid(point, spacing, box, config.grid) for point in lesions[study]])
        sizes.append(((box[1] - box[0]) / config.grid[0], (box[3] - box[2]) / config.grid[1]))
    result = pointing_game(maps, targets, sizes, [body_mask(c) for c in scans.counts], tolerance_mm=250.0)
    assert result.n == 30
    assert result.hit_rate > 2 * result.chance_rate and result.p_value < 1e-3, result.summary()
    assert result.hit_rate > result.shuffled_rate and result.shuffled_p_value < 0.05, result.summary()


def test_ground_truth_side_files_of_the_phantom(tmp_path):
    """ground_truth.json (records; only metastatic lesions count) is preferred over lesions.json (points)."""
    from evaluation.cam import find_hearts, find_lesions

    manifest = tmp_path / "manifest.csv"
    assert find_lesions(manifest) is None and find_hearts(manifest) is None
    (tmp_path / "lesions.json").write_text(json.dumps({"s1": [[10.0, 5.0]], "s2": []}))
    assert find_lesions(manifest) == {"s1": [(10.0, 5.0)], "s2": []}
    record = {"study_id": "s1", "lesions": [{"kind": "metastasis", "row": 10.0, "col": 5.0},
                                            {"kind": "degenerative", "row": 50.0, "col": 9.0},
                                            {"kind": "cold", "row": 20.0, "col": 7.5}],
              "heart": {"row": 30.0, "col": 12.0, "half_axes_px": [5, 3]}}
    (tmp_path / "ground_truth.json").write_text(json.dumps({"s1": record}))
    assert find_lesions(manifest) == {"s1": [(10.0, 5.0), (20.0, 7.5)]}
    assert find_hearts(manifest) == {"s1": (30.0, 12.0)}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(BadInputError, match="not JSON"):
        find_lesions(manifest, tmp_path / "bad.json")
