"""Memorization audit (synthscan/privacy.py): alignment, search, calibration and the positive/negative controls."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.stats import betabinom
from test_privacy_phantom import acquire, cohort, expected_counts, patient

from synthscan.errors import BadInputError
from synthscan.privacy import (DEFAULT_SHIFTS, Embedding, MemorizationAuditor, NeighbourIndex, align_scan,
                               area_matrix, criterion_values, pooled_vectors, shift_images, unit_vectors)
from synthscan.scan import Scan


@pytest.fixture(scope="module")
def world():
    """Training, held-out and independent 'synthetic' toy cohorts, and an auditor fitted on them."""
    train, holdout = cohort(120, seed=11), cohort(80, seed=12)
    auditor = MemorizationAuditor(false_positive_rate=0.05).fit(train, reference_scans=holdout)
    return {"train": train, "auditor": auditor}


def _moved(scan: Scan, rows: int) -> Scan:
    """The same patient lying ``rows`` pixels further down the table (zero-filled)."""
    counts = np.zeros_like(scan.counts)
    counts[:, rows:] = scan.counts[:, : scan.shape[0] - rows]
    return Scan(counts, scan.pixel_spacing_mm)


# ------------------------------------------------------------------------------------------- alignment

def test_area_matrix_averages_and_pads_with_zeros():
    weights = area_matrix(8, 4, 0, 8)
    assert np.allclose(weights @ np.arange(8.0), [0.5, 2.5, 4.5, 6.5])
    padded = area_matrix(4, 2, -2, 6)  # bins [-2, 2) and [2, 6): half of each bin lies outside the image
    assert np.allclose(padded @ np.ones(4), [0.5, 0.5])


def test_shift_images_translates_with_zero_fill():
    images = np.arange(2 * 1 * 5 * 4, dtype=np.float32).reshape(2, 1, 5, 4) + 1
    moved = shift_images(images, [(0, 0), (2, 0), (0, -1)])
    assert np.array_equal(moved[:, 0], images)
    assert np.array_equal(moved[:, 1, :, 2:], images[:, :, :3]) and not moved[:, 1, :, :2].any()
    assert np.array_equal(moved[:, 2, :, :, :3], images[:, :, :, 1:]) and not moved[:, 2, :, :, 3].any()


def test_alignment_is_invariant_to_table_position_dose_matrix_and_cropped_feet():
    rng = np.random.default_rng(1)
    expected = expected_counts(patient(rng))
    reference = align_scan(Scan(expected, (4.8, 4.8)))
    assert reference.shape == (2, 128, 32) and np.isclose((reference ** 2).mean(), 1, atol=1e-4)
    shifted = np.zeros_like(expected)
    shifted[:, 30:] = expected[:, :-30]  # 144 mm further down the table, feet leave the field
    variants = [(shifted, (4.8, 4.8)), (2 * np.roll(expected, 3, axis=2), (4.8, 4.8)),
                (expected.reshape(2, 256, 2, 64, 2).sum(axis=(2, 4)), (9.6, 9.6))]  # the same field at 256x64
    for counts, spacing in variants:
        distance = 1 - float(unit_vectors(align_scan(Scan(counts, spacing))[None])[0]
                             @ unit_vectors(reference[None])[0])
        assert distance < 2e-3
    other = align_scan(Scan(expected_counts(patient(rng)), (4.8, 4.8)))
    assert 1 - float(unit_vectors(other[None])[0] @ unit_vectors(reference[None])[0]) > 5e-3


def test_align_refuses_an_empty_scan():
    with pytest.raises(BadInputError, match="no counts"):
        align_scan(Scan(np.zeros((2, 64, 16), np.float32), (4.8, 4.8)))


# ------------------------------------------------------------------------------------------- search

def test_two_stage_search_equals_exhaustive_search(world):
    auditor = world["auditor"]
    train, queries = auditor.train_, auditor.embed(cohort(40, seed=13))
    groups = np.arange(len(train)).astype(str)
    fast = NeighbourIndex(unit_vectors(train.pixel), groups, DEFAULT_SHIFTS, coarse=pooled_vectors(train.pixel))
    exhaustive = NeighbourIndex(unit_vectors(train.pixel), groups, DEFAULT_SHIFTS, candidates=len(train))
    a = fast.query(unit_vectors(queries.pixel), queries.pixel, coarse=pooled_vectors(queries.pixel))
    b = exhaustive.query(unit_vectors(queries.pixel), queries.pixel)
    assert np.array_equal(a.index, b.index)
    assert np.allclose(a.distance, b.distance, atol=1e-6)
    # The second patient comes from the coarse candidates: rarely missed, and then only a farther one is taken.
    assert (a.second_distance >= b.second_distance - 1e-6).all()
    assert np.mean(a.second_index == b.second_index) >= 0.9
    brute = 1 - (unit_vectors(queries.pixel) @ unit_vectors(train.pixel).T).max(axis=1)
    assert (a.distance <= brute + 1e-6).all()  # translations can only bring a pair closer


def test_search_skips_the_query_patients_own_studies():
    vectors = unit_vectors(np.random.default_rng(0).normal(size=(6, 10)))
    index = NeighbourIndex(vectors, ["a", "a", "b", "b", "c", "c"])
    found = index.query(vectors, groups=["a", "a", "b", "b", "c", "c"])
    assert all(index.groups[found.index[i]] != index.groups[i] for i in range(6))
    assert all(index.groups[found.second_index[i]] not in (index.groups[i], index.groups[found.index[i]])
               for i in range(6))
    alone = index.query(vectors[:1])
    assert alone.index[0] == 0 and alone.distance[0] < 1e-6 and alone.second_index[0] in (2, 3, 4, 5)


# ------------------------------------------------------------------------------------------- calibration

def test_each_rule_threshold_is_the_kth_smallest_real_value(world):
    auditor = world["auditor"]
    assert [rule.name for rule in auditor.rules_] == ["pixel distance", "pixel ratio"]
    for rule in auditor.rules_:
        values = np.sort(criterion_values(auditor.reference_neighbours_["pixel"], rule.criterion))
        assert rule.k == int(0.05 / 2 * (80 + 1)) == 2 and rule.n_reference == 80
        assert rule.threshold == pytest.approx(values[rule.k - 1])
        assert rule.expected_rate == pytest.approx(2 / 81)
    assert auditor.calibration_.startswith("held-out")


@pytest.mark.parametrize("seed", range(5))
def test_planted_copies_are_always_flagged(world, seed):
    """Exact, Poisson re-acquired, half-dose, moved and re-acquired copies hidden among independent scans."""
    rng = np.random.default_rng(100 + seed)
    train, auditor = world["train"], world["auditor"]
    sources = rng.choice(len(train), 5, replace=False)
    planted = [
        train[sources[0]],
        Scan(rng.poisson(train[sources[1]].counts).astype(np.float32), train[sources[1]].pixel_spacing_mm),
        Scan(rng.binomial(train[sources[2]].counts.astype(np.int64), 0.5).astype(np.float32), (4.8, 4.8)),
        _moved(train[sources[3]], int(rng.integers(5, 40))),
        Scan(rng.poisson(_moved(train[sources[4]], 9).counts).astype(np.float32), (4.8, 4.8)),
    ]
    samples = cohort(15, seed=200 + seed) + planted
    found = auditor.neighbours(auditor.embed(samples))["pixel"]
    flags = auditor.flags({"pixel": found})
    assert flags["pixel distance"][15:].all() and flags["pixel ratio"][15:].all()
    assert np.array_equal(found.index[15:], sources)
    assert (found.ratio[15:] < 1 / 3).all()
    assert auditor.near_copies(planted).all()


def test_independent_scans_are_flagged_at_the_nominal_rate(world):
    auditor = world["auditor"]
    n = 200
    flags = auditor.flags(auditor.neighbours(auditor.embed(cohort(n, seed=14))))
    for rule in auditor.rules_:
        # Exact null: BetaBinomial(n, k, n_ref + 1 - k) (mean 4.9 here); the bound fails a miscalibrated rule.
        assert flags[rule.name].sum() <= betabinom.ppf(0.999, n, rule.k, rule.n_reference + 1 - rule.k)


def test_blurred_copies_are_caught_by_the_memorization_ratio(world):
    """A generator that reproduces training scans through a lossy decoder: copies blurred to 24 mm FWHM."""
    rng = np.random.default_rng(5)
    train, auditor = world["train"], world["auditor"]
    sigma_px = 24 / 2.355 / 4.8
    blurred = [Scan(rng.poisson(gaussian_filter(train[i].counts, (0, sigma_px, sigma_px))).astype(np.float32),
                    (4.8, 4.8)) for i in range(10)]
    found = auditor.neighbours(auditor.embed(blurred))
    flags = auditor.flags(found)
    assert np.array_equal(found["pixel"].index, np.arange(10))
    assert flags["pixel ratio"].all()
    assert not flags["pixel distance"].all()  # the distance rule alone would miss some


def test_leave_one_patient_out_calibration_ignores_repeat_studies():
    """Two studies of each patient: without patient ids the repeats would set a threshold at the noise floor."""
    rng = np.random.default_rng(3)
    expected = [expected_counts(patient(rng)) for _ in range(40)]
    train = [acquire(e, rng) for e in expected for _ in range(2)]
    patients = [f"P{i}" for i in range(40) for _ in range(2)]
    grouped = MemorizationAuditor(false_positive_rate=0.05).fit(train, patients)
    naive = MemorizationAuditor(false_positive_rate=0.05).fit(train)
    assert grouped.calibration_.startswith("training scans")
    assert grouped.rules_[0].threshold > 3 * naive.rules_[0].threshold  # the distance rule
    copy = acquire(expected[7], rng)  # a third acquisition of patient 7
    assert grouped.is_near_copy(copy)
    found = grouped.neighbours(grouped.embed([copy]))["pixel"]
    assert patients[found.index[0]] == "P7" and patients[found.second_index[0]] != "P7"


# ------------------------------------------------------------------------------------------- feature space

def _profile_features(scans):
    """A stand-in learned feature function: row profiles of each view on 64 bins."""
    return np.stack([align_scan(s, (64, 8)).sum(axis=2).ravel() for s in scans])


def test_feature_space_is_searched_too_and_the_rate_is_split(world):
    train = world["train"][:60]
    auditor = MemorizationAuditor(_profile_features, false_positive_rate=0.05).fit(train, reference_scans=cohort(
        60, seed=15))
    assert auditor.spaces == ("pixel", "features")
    assert [rule.name for rule in auditor.rules_] == [
        "pixel distance", "pixel ratio", "features distance", "features ratio"]
    assert all(rule.k == 1 and rule.expected_rate == pytest.approx(1 / 61) for rule in auditor.rules_)
    found = auditor.neighbours(auditor.embed([train[4]]))
    assert found["features"].index[0] == 4 and found["features"].distance[0] < 1e-6
    assert auditor.is_near_copy(train[4])


def test_feature_function_output_is_checked(world):
    auditor = MemorizationAuditor(lambda scans: np.full((len(scans), 3), np.nan))
    with pytest.raises(BadInputError, match="NaN"):
        auditor.embed(world["train"][:2])


# ------------------------------------------------------------------------------------------- input checks

def test_bad_inputs_are_refused(world):
    train = world["train"][:10]
    with pytest.raises(BadInputError, match="same patient|share patient"):
        MemorizationAuditor().fit(train, [f"P{i}" for i in range(10)], train[:3], ["P1", "X", "Y"])
    with pytest.raises(BadInputError, match="at least 3 training scans"):
        MemorizationAuditor().fit(train[:2])
    with pytest.raises(BadInputError, match="2 patients"):
        MemorizationAuditor().fit(train[:4], ["P"] * 4)
    anterior = Scan(train[0].counts[:1], (4.8, 4.8), ("anterior",))
    with pytest.raises(BadInputError, match="same views"):
        MemorizationAuditor().fit(train[:3] + [anterior])
    with pytest.raises(BadInputError, match="false-positive rate"):
        MemorizationAuditor(false_positive_rate=0)


def test_embedding_concat_needs_parts():
    with pytest.raises(BadInputError):
        Embedding.concat([])
