"""Packets: stratified selection, one rendering for all cases, and proof that nothing but pixels tells real
from synthetic (file names, sizes, metadata, order, ids); the key never enters a packet."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reader_study.display import display_pixels, resample_area, thin_counts
from reader_study.key import read_key
from reader_study.packet import (ID_ALPHABET, ID_LENGTH, StudyCase, StudySettings, auc, condition_of,
                                 make_study, make_study_from_manifests, select_cases)
from reader_study.responses import DIAGNOSES
from synthscan.errors import BadInputError
from synthscan.io.dicom import write_scan
from synthscan.io.manifest import write_manifest
from synthscan.scan import Scan

PACKET_KEYS = {"format", "study_id", "packet_id", "reader", "title", "views", "sides", "rows", "cols", "answers",
               "cases"}


def packet_json(path: Path) -> dict:
    html = path.read_text(encoding="utf-8")
    match = re.search(r'<script id="packet" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def _body(rng, rows, cols, counts, smooth):
    """A crude body: soft tissue, a spine, a bladder; Poisson counts (smoothed for the 'synthetic' kind)."""
    image = np.zeros((rows, cols))
    image[:, cols // 4: -cols // 4] = 0.2                      # the body; air around it has no counts
    image[rows // 8:, cols // 2 - 1: cols // 2 + 1] = 2.0
    image[rows // 2: rows // 2 + 3, cols // 2 - 2: cols // 2 + 2] = 6.0
    views = np.stack([image, image]) * counts / image.sum() / 2
    noisy = rng.poisson(views).astype(np.float32)
    if smooth:   # a generator that under-reproduces Poisson noise
        noisy = np.rint(0.25 * noisy + 0.75 * views).astype(np.float32)
    return Scan(noisy, (2400 / rows / 1.0, 2400 / rows / 1.0))


@pytest.fixture
def cohort(tmp_path):
    """Real (128x32, many counts) and synthetic (64x16, smooth) DICOM scans with manifests."""
    rng = np.random.default_rng(7)
    conditions = [("normal", 0, 0), ("metastasis", 1, 0), ("amyloidosis", 0, 2), ("amyloidosis", 0, 3)]
    frames = {}
    for kind, rows, cols, counts, n in (("real", 128, 32, 400_000, 16), ("synthetic", 64, 16, 60_000, 16)):
        records = []
        for i in range(n):
            condition, metastasis, grade = conditions[i % 4]
            study_id = f"SITEA-{i:04d}" if kind == "real" else f"syn-deadbeef-{condition}-{i:06d}"
            path = tmp_path / kind / f"{study_id}.dcm"
            scan = _body(rng, rows, cols, counts, smooth=kind == "synthetic")
            write_scan(path, scan, {"patient_name": "DOE^JANE", "patient_id": f"PAT{i}", "institution_name":
                                    "Hospital Alpha"} if kind == "real" else {})
            records.append({"study_id": study_id, "patient_id": f"PAT{i}" if kind == "real" else study_id,
                            "site": "alpha" if kind == "real" else "", "path": path.name,
                            "views": "anterior+posterior", "rows": rows, "cols": cols,
                            "metastasis": metastasis, "amyloid_grade": grade,
                            "synthetic": int(kind == "synthetic"),
                            "source": "real" if kind == "real" else "deadbeefcafe",
                            "condition": condition if kind == "synthetic" else None,
                            "seed": i if kind == "synthetic" else None})
        frames[kind] = write_manifest(pd.DataFrame(records), tmp_path / kind / "manifest.csv")
    return frames


def test_real_and_synthetic_are_told_apart_by_nothing_but_pixels(cohort, tmp_path):
    settings = StudySettings(n_cases=16, n_readers=3)
    made = make_study_from_manifests(cohort["real"], cohort["synthetic"], tmp_path / "study", settings, seed=3)
    key = read_key(made.key)
    assert made.grid == (64, 16)                       # the smaller matrix: both kinds resampled to it
    # File names: packet-reader-k.html only, all packets exactly the same size.
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == [
        "key.json", "packet-reader-1.html", "packet-reader-2.html", "packet-reader-3.html"]
    assert len({p.stat().st_size for p in made.packets}) == 1
    texts = [p.read_text() for p in made.packets]
    truth = key.truth["synthetic"].astype(bool)
    for path, text in zip(made.packets, texts):
        packet = packet_json(path)
        assert set(packet) == PACKET_KEYS
        # Metadata: nothing from the manifests, DICOM headers or the key appears anywhere in a packet.
        for secret in ("SITEA", "syn-", "deadbeef", "PAT1", "DOE", "Hospital", "alpha", "key.json", ".dcm",
                       "manifest", "seed", "origin", "truth"):
            assert secret not in text, secret
        # Sizes: every case is a raw byte array of one length; only 'id' and 'pixels'.
        assert {tuple(sorted(case)) for case in packet["cases"]} == {("id", "pixels")}
        assert {len(case["pixels"]) for case in packet["cases"]} == {4 * -(-2 * 64 * 16 // 3)}
        # Ids: opaque, random, not the study ids; the same set in every packet.
        ids = [case["id"] for case in packet["cases"]]
        assert all(re.fullmatch(f"[{ID_ALPHABET}]{{{ID_LENGTH}}}", i) for i in ids)
        assert set(ids) == set(key.case_ids)
        # Pixels: one rendering: same grid, full 8-bit range, white background, in both kinds.
        pixels = {case["id"]: np.frombuffer(base64.b64decode(case["pixels"]), np.uint8) for case in packet["cases"]}
        for kind in (True, False):
            values = np.concatenate([pixels[i] for i in truth.index[truth == kind]])
            assert values.min() == 0 and values.max() == 255 and (values == 255).mean() >= 0.5
    audit = made.audit
    assert audit["payload_bytes_auc"] == 0.5 and audit["payload_bytes_distinct"] == 1
    # The same pixels saved as per-case PNG files would have given the answer away (smooth synthetic scans
    # compress better): the reason packets hold raw, fixed-size arrays.
    assert audit["png_bytes_auc"] < 0.1 or audit["png_bytes_auc"] > 0.9
    assert audit["png_bytes_median_synthetic"] != audit["png_bytes_median_real"]


def _in_memory_study(tmp_path, n_cases, n_readers=2, seed=0, shape=(16, 4), **settings):
    rng = np.random.default_rng(seed)
    cases = [StudyCase(f"study-{i}", i % 2 == 1, DIAGNOSES[i % 3], 2 if i % 3 == 2 else None)
             for i in range(n_cases)]
    scans = {c.study_id: Scan(rng.poisson(20, (2, *shape)).astype(np.float32), (2.4, 2.4)) for c in cases}
    made = make_study(cases, lambda c: scans[c.study_id], tmp_path / f"study-{seed}",
                      StudySettings(n_cases=n_cases, n_readers=n_readers, **settings), seed=seed)
    return made, read_key(made.key)


def test_order_and_ids_carry_no_information(tmp_path):
    n_cases, n_readers = 400, 4
    made, key = _in_memory_study(tmp_path, n_cases, n_readers, seed=1)
    synthetic = key.truth["synthetic"].astype(bool)
    # With no dependence, AUC has SE sqrt((n1 + n0 + 1) / (12 n1 n0)) ~ 0.029 here; allow 3.5 SE.
    bound = 3.5 * np.sqrt((n_cases + 1) / (12 * (n_cases / 2) ** 2))
    for packet in key.packets.values():
        position = {case: k for k, case in enumerate(packet.case_ids)}
        assert abs(auc([position[c] for c in synthetic.index], synthetic) - 0.5) < bound
    ids = list(synthetic.index)
    assert abs(auc(np.argsort(np.argsort(ids)), synthetic) - 0.5) < bound
    orders = [p.case_ids for p in key.packets.values()]
    assert len(set(orders)) == n_readers                       # a random order per reader by default
    assert not set(ids) & {f"study-{i}" for i in range(n_cases)}
    assert key.document["audit"]["position_auc_max_deviation"] < bound
    shared, shared_key = _in_memory_study(tmp_path, 20, 3, seed=2, shared_order=True)
    assert len({p.case_ids for p in shared_key.packets.values()}) == 1


def test_selection_keeps_the_real_condition_mix_for_synthetic_cases():
    rng = np.random.default_rng(0)
    real = [StudyCase(f"r{i}", False, c) for i, c in enumerate(["normal"] * 60 + ["metastasis"] * 30 +
                                                               ["amyloidosis"] * 10)]
    synthetic = [StudyCase(f"s{i}", True, c) for i, c in enumerate(["normal", "metastasis", "amyloidosis"] * 40)]
    chosen = select_cases(real, synthetic, StudySettings(n_cases=40), rng)
    mix = pd.DataFrame([(c.synthetic, c.condition) for c in chosen], columns=["synthetic", "condition"])
    counts = mix.value_counts().unstack(0)
    assert counts.loc["normal"].tolist() == [12, 12] and counts.loc["metastasis"].tolist() == [6, 6]
    assert counts.loc["amyloidosis"].tolist() == [2, 2]
    assert len({c.study_id for c in chosen}) == 40
    equal = select_cases(real, synthetic, StudySettings(n_cases=30, equal_conditions=True), rng)
    assert pd.Series([c.condition for c in equal]).value_counts().tolist() == [10, 10, 10]
    one_amyloidosis = [c for c in synthetic if c.condition != "amyloidosis"] + synthetic[2:3]
    with pytest.raises(BadInputError, match="need 2 synthetic amyloidosis cases but the synthetic manifest has 1"):
        select_cases(real, one_amyloidosis, StudySettings(n_cases=40), rng)


@pytest.mark.parametrize("metastasis, grade, condition, expected", [
    (0, 0, None, ("normal", None)), (1, 0, None, ("metastasis", None)), (0, 3, None, ("amyloidosis", 3)),
    (1, 2, None, (None, 2)), (None, 0, None, (None, 0)), (0, None, None, (None, None)),
    (0, 2, "amyloidosis", ("amyloidosis", 2)), (1, 0, "metastasis", ("metastasis", None))])
def test_condition_of_labels(metastasis, grade, condition, expected):
    assert condition_of(metastasis, grade, condition)[:2] == expected


def test_resampling_conserves_counts(rng):
    image = rng.poisson(5.0, (2, 128, 32)).astype(float)
    for rows, cols in ((64, 16), (100, 30), (256, 64)):
        assert resample_area(image, rows, cols).sum() == pytest.approx(image.sum())
    halved = resample_area(image, 64, 16)
    assert np.allclose(halved, image.reshape(2, 64, 2, 16, 2).sum(axis=(2, 4)))
    flat = resample_area(np.full((40, 10), 3.0), 30, 7)
    assert np.allclose(flat, flat.flat[0])


def test_thinning_brings_busy_scans_to_the_target(rng):
    counts = rng.poisson(50.0, (2, 64, 16)).astype(np.float32)
    thinned = thin_counts(counts, 20_000, rng)
    assert thinned.sum(axis=(1, 2)) == pytest.approx([20_000, 20_000], rel=0.03)
    assert (thinned <= counts).all()
    assert np.array_equal(thin_counts(counts, 1e9, rng), counts)


def test_display_shows_posterior_from_behind(scan_factory):
    scan = scan_factory(rows=64, cols=16)          # hot patch at the patient's right shoulder, column 0
    pixels = display_pixels(scan, (64, 16))
    anterior, posterior = pixels[:, :16].astype(int)
    assert anterior[:16, :4].mean() < anterior[:16, -4:].mean()      # dark (hot) on the viewer's left
    assert posterior[:16, -4:].mean() < posterior[:16, :4].mean()    # seen from behind: on the right
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 64, 16)


def test_make_refuses_to_overwrite_and_checks_manifests(cohort, tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    (out / "key.json").write_text("precious")
    with pytest.raises(BadInputError, match="non-empty"):
        make_study_from_manifests(cohort["real"], cohort["synthetic"], out, StudySettings(n_cases=8), seed=0)
    assert (out / "key.json").read_text() == "precious"
    with pytest.raises(BadInputError, match=r"manifest.csv: row 2 .*synthetic=1 in the --real manifest"):
        make_study_from_manifests(cohort["synthetic"], cohort["synthetic"], tmp_path / "new", StudySettings(8))
    assert not (tmp_path / "new").exists()


def test_protected_key_hides_the_truth_and_decodes_with_the_passphrase(tmp_path):
    plain, plain_key = _in_memory_study(tmp_path, 12, seed=5)
    rng = np.random.default_rng(5)
    cases = [StudyCase(f"study-{i}", i % 2 == 1, DIAGNOSES[i % 3], 2 if i % 3 == 2 else None) for i in range(12)]
    scans = {c.study_id: Scan(rng.poisson(20, (2, 16, 4)).astype(np.float32), (2.4, 2.4)) for c in cases}
    made = make_study(cases, lambda c: scans[c.study_id], tmp_path / "protected", StudySettings(n_cases=12,
                      n_readers=2), seed=5, passphrase="correct horse battery staple")
    text = made.key.read_text()
    for word in ("normal", "metastasis", "amyloidosis", "study-", '"synthetic": 1', '"seed"'):
        assert word not in text
    with pytest.raises(BadInputError, match="passphrase"):
        read_key(made.key)
    with pytest.raises(BadInputError, match="wrong passphrase"):
        read_key(made.key, "wrong")
    key = read_key(made.key, "correct horse battery staple")
    assert key.protected
    pd.testing.assert_frame_equal(key.truth, plain_key.truth)   # same seed: same ids and truth as unprotected
