"""Imbalance strategies, augmentation and the step-addressed training stream."""

import numpy as np
import pytest
import torch

from evaluation.strategies import (STRATEGIES, TrainingStream, affine_blur, gaussian_blur, get_strategy,
                                   thin_counts)
from synthscan.errors import BadInputError

LABELS = np.array([0] * 18 + [1] * 2)
IDENTITY = {"rotation_deg": 0.0, "scale": 1.0, "shift_rows": 0.0, "shift_cols": 0.0, "count_fraction": 1.0,
            "blur_px": 0.0}


def test_registry_holds_the_four_heliyon_strategies_and_conventional_augmentation():
    assert set(STRATEGIES) == {"original", "class-weight", "augment-positives", "augment-all", "conventional"}
    assert get_strategy("class-weight").positive_weight == 10
    with pytest.raises(BadInputError, match="unknown strategy"):
        get_strategy("smote")


@pytest.mark.parametrize("name, expected", [("original", 20), ("class-weight", 20), ("augment-positives", 18 + 20),
                                            ("augment-all", 200), ("conventional", 20)])
def test_tenfold_augmentation_enlarges_the_set_as_in_the_study(name, expected):
    stream = TrainingStream(LABELS, get_strategy(name), batch_size=4, seed=0)
    assert len(stream) == expected


def test_every_pass_uses_every_item_once_and_batches_depend_on_the_step_only():
    stream = TrainingStream(LABELS, get_strategy("augment-positives"), batch_size=5, seed=3)
    items = [item for step in range(2 * stream.steps_per_pass()) for item in stream.batch_items(step)]
    first_pass = sorted((row, copy) for row, copy, pass_index in items if pass_index == 0)
    assert first_pass == sorted(zip(stream.rows.tolist(), stream.copies.tolist()))
    again = TrainingStream(LABELS, get_strategy("augment-positives"), batch_size=5, seed=3)
    assert again.batch_items(5) == stream.batch_items(5)
    assert TrainingStream(LABELS, get_strategy("augment-positives"), 5, seed=4).batch_items(0) != stream.batch_items(0)


def test_offline_copies_are_fixed_and_online_augmentation_is_fresh_each_pass(rng):
    counts = rng.poisson(20.0, (2, 2, 32, 8)).astype(np.float32)
    labels = np.array([0, 1])
    offline = TrainingStream(labels, get_strategy("augment-positives"), batch_size=11, seed=0)
    batch_a, rows_a = offline.batch(counts, 0)  # pass 0: all 11 items
    batch_b, rows_b = offline.batch(counts, 1)  # pass 1
    key = lambda rows, s: {(int(r), c): b for (r, c, _), b in zip(offline.batch_items(s), rows)}
    a, b = key(batch_a, 0), key(batch_b, 1)
    for item in a:
        torch.testing.assert_close(a[item], b[item])  # the same augmented copy in every pass
    torch.testing.assert_close(a[(0, 0)], torch.from_numpy(counts[0]))  # copy 0 is the original
    assert not torch.equal(a[(1, 1)], torch.from_numpy(counts[1]))
    online = TrainingStream(labels, get_strategy("conventional"), batch_size=2, seed=0)
    first = dict(zip(online.batch(counts, 0)[1], online.batch(counts, 0)[0]))
    second = dict(zip(online.batch(counts, 1)[1], online.batch(counts, 1)[0]))
    assert not torch.equal(first[0], second[0])


def test_thinning_is_poisson_resampling(rng):
    counts = rng.poisson(50.0, 200_000).astype(np.float32)
    thinned = thin_counts(counts, 0.3, rng)
    assert thinned.mean() == pytest.approx(15.0, rel=0.01)
    assert thinned.var() == pytest.approx(15.0, rel=0.03)  # binomial thinning of Poisson counts stays Poisson
    assert (thinned == np.rint(thinned)).all()


def test_identity_parameters_change_nothing_and_there_is_no_left_right_flip(rng):
    counts = torch.from_numpy(rng.poisson(5.0, (1, 2, 64, 16)).astype(np.float32))
    torch.testing.assert_close(affine_blur(counts, [IDENTITY]), counts, atol=1e-4, rtol=1e-4)
    hot = torch.zeros(1, 2, 64, 16)
    hot[:, :, 20:24, 2:4] = 100.0  # patient's right
    for angle in (-5.0, 5.0):
        moved = affine_blur(hot, [{**IDENTITY, "rotation_deg": angle, "scale": 1.08, "blur_px": 1.0}])
        assert moved[..., :8].sum() > 10 * moved[..., 8:].sum()


def test_shift_moves_the_image_by_the_fraction_given():
    image = torch.zeros(1, 1, 64, 16)
    image[0, 0, 30, 8] = 1.0
    moved = affine_blur(image, [{**IDENTITY, "shift_rows": 4 / 64}])
    assert np.unravel_index(int(moved[0, 0].argmax()), (64, 16)) == (34, 8)


def test_gaussian_blur_keeps_counts_and_spreads_them():
    image = torch.zeros(2, 1, 21, 21)
    image[:, 0, 10, 10] = 1.0
    blurred = gaussian_blur(image, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(blurred[0], image[0])
    assert blurred[1].sum() == pytest.approx(1.0, abs=1e-5) and blurred[1, 0, 10, 10] < 0.2
