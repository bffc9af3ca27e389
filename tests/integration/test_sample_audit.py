"""``synthscan sample --audit``: a saved audit index makes sample re-draw near-copies of training scans."""

from __future__ import annotations

import numpy as np
import pytest

from synthscan.cli import main
from synthscan.io.dicom import read_scan
from synthscan.io.manifest import read_manifest
from synthscan.model.tiny import tiny_model
from synthscan.privacy import MemorizationAuditor


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample-audit")
    model = tiny_model(seed=3)
    model.save_pretrained(root / "model")
    plain = root / "plain"
    assert main(["sample", "--model", str(root / "model"), "--condition", "metastasis", "-n", "4", "--out",
                 str(plain), "--quiet"]) == 0
    others = root / "others"  # the generator's "training" and held-out scans: its own samples, other seeds
    assert main(["sample", "--model", str(root / "model"), "--condition", "metastasis", "-n", "60", "--seed", "100",
                 "--out", str(others), "--quiet"]) == 0
    other_scans = [read_scan(others / path) for path in read_manifest(others / "manifest.csv")["path"]]
    sampled = read_manifest(plain / "manifest.csv").set_index("seed")
    copied = read_scan(plain / sampled.loc[2, "path"])  # a "training scan" that seed 2 reproduces exactly
    train = other_scans[:20] + [copied]
    auditor = MemorizationAuditor().fit(train, [f"patient-secret-{i:03d}" for i in range(21)], other_scans[20:])
    auditor.save(root / "index")
    return root, model, plain, train, auditor


def _pixels(folder):
    frame = read_manifest(folder / "manifest.csv").set_index("seed")
    return frame, {seed: read_scan(folder / frame.loc[seed, "path"]).counts for seed in frame.index}


def test_the_planted_copy_is_redrawn_and_nothing_else(setting, capsys):
    root, _, plain, _, _ = setting
    out = root / "audited"
    assert main(["sample", "--model", str(root / "model"), "--condition", "metastasis", "-n", "4", "--out", str(out),
                 "--audit", str(root / "index"), "--quiet"]) == 0
    assert "audit: 4 checked, 1 re-drawn" in capsys.readouterr().out
    frame, audited = _pixels(out)
    _, original = _pixels(plain)
    assert frame["audit_redraws"].to_dict() == {0: 0, 1: 0, 2: 1, 3: 0}
    assert not np.array_equal(audited[2], original[2])
    for seed in (0, 1, 3):
        np.testing.assert_array_equal(audited[seed], original[seed])


def test_redraws_do_not_depend_on_the_batch_size(setting):
    root = setting[0]
    folders = []
    for batch in ("1", "3"):
        out = root / f"batch-{batch}"
        assert main(["sample", "--model", str(root / "model"), "--condition", "metastasis", "-n", "4", "--out",
                     str(out), "--audit", str(root / "index"), "--batch-size", batch, "--quiet"]) == 0
        folders.append(_pixels(out)[1])
    for seed in range(4):
        np.testing.assert_array_equal(folders[0][seed], folders[1][seed])


def test_the_loaded_index_flags_like_the_fitted_auditor(setting):
    root, _, _, train, auditor = setting
    loaded = MemorizationAuditor.load(root / "index")
    np.testing.assert_array_equal(loaded.near_copies(train), auditor.near_copies(train))
    assert loaded.is_near_copy(train[-1])


def test_the_index_holds_no_identifier(setting):
    root = setting[0]
    blob = b"".join(path.read_bytes() for path in (root / "index").iterdir())
    frame = read_manifest(root / "others" / "manifest.csv")
    for text in ["patient-secret-001", "patient-secret-020", *frame["study_id"][:5]]:
        assert text.encode() not in blob


def test_an_encoder_index_refuses_another_generator(setting, tmp_path, capsys):
    from synthscan.membership import encoder_features

    root, model, _, train, _ = setting
    auditor = MemorizationAuditor(encoder_features(model)).fit(train, [f"P{i}" for i in range(len(train))])
    auditor.save(tmp_path / "index", model.hash)
    tiny_model(seed=9).save_pretrained(tmp_path / "other")
    assert main(["sample", "--model", str(tmp_path / "other"), "--condition", "normal", "-n", "2", "--out",
                 str(tmp_path / "out"), "--audit", str(tmp_path / "index"), "--quiet"]) == 2
    assert "encoder of generator" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_no_index_is_refused(setting, tmp_path, capsys):
    (tmp_path / "index").mkdir()
    assert main(["sample", "--model", str(setting[0] / "model"), "--condition", "normal", "-n", "2", "--out",
                 str(tmp_path / "out"), "--audit", str(tmp_path / "index"), "--quiet"]) == 2
    assert "not a synthscan audit index" in capsys.readouterr().err


def test_audit_cli_saves_an_index_that_sample_uses(setting, tmp_path, capsys):
    root = setting[0]
    out = tmp_path / "audit"
    assert main(["audit", "--samples", str(root / "plain" / "manifest.csv"), "--train",
                 str(root / "others" / "manifest.csv"), "--out", str(out), "--save-index", "--max-pairs", "0"]) == 0
    assert MemorizationAuditor.load(out / "index").rules_
    assert main(["sample", "--model", str(root / "model"), "--condition", "normal", "-n", "2", "--out",
                 str(tmp_path / "s"), "--audit", str(out / "index"), "--quiet"]) == 0
    assert "audit: 2 checked" in capsys.readouterr().out
    assert main(["audit", "--samples", str(root / "plain" / "manifest.csv"), "--train",
                 str(root / "others" / "manifest.csv"), "--out", str(tmp_path / "a2"), "--save-index",
                 "--judge", str(tmp_path)]) == 2
