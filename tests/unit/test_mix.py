"""synthscan/mix.py and ``synthscan mix``: strategies, determinism, provenance, paths, guards, bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from synthscan.cli import main
from synthscan.errors import BadInputError
from synthscan.io.manifest import read_manifest, scan_path, write_manifest
from synthscan.mix import (assert_no_synthetic, is_synthetic, mix, mix_summary, plan_counts, real_classes,
                           rebase_paths)


def real_manifest(n_normal=30, n_metastasis=6, n_amyloid=4, n_grade1=2) -> pd.DataFrame:
    rows = []
    for klass, n, metastasis, grade in (("n", n_normal, 0, 0), ("m", n_metastasis, 1, 0),
                                        ("a", n_amyloid, 0, 3), ("g", n_grade1, 0, 1)):
        for i in range(n):
            rows.append({"study_id": f"real-{klass}{i:03d}", "patient_id": f"p-{klass}{i:03d}", "site": "site-b",
                         "path": f"scans/{klass}{i:03d}.dcm", "views": "anterior+posterior",
                         "metastasis": metastasis, "amyloid_grade": grade})
    return pd.DataFrame(rows)


def synthetic_manifest(per_condition=None) -> pd.DataFrame:
    per_condition = per_condition or {"normal": 40, "metastasis": 40, "amyloidosis-g2": 10, "amyloidosis-g3": 20}
    rows = []
    for key, n in per_condition.items():
        condition, _, grade = key.partition("-g")
        for seed in range(n):
            tag = condition + (f"-g{grade}" if grade else "")
            rows.append({"study_id": f"syn-0123abcd-{tag}-{seed:06d}", "patient_id": f"syn-{tag}-{seed:06d}",
                         "path": f"{tag}/{seed:06d}.dcm", "views": "anterior+posterior", "synthetic": 1,
                         "source": "0123abcd", "seed": seed, "condition": condition,
                         "metastasis": int(condition == "metastasis"), "amyloid_grade": int(grade or 0),
                         "guidance_scale": 2.0})
    return pd.DataFrame(rows)


def written(frame: pd.DataFrame, path, touch=True) -> pd.DataFrame:
    """Write a manifest and (optionally) empty files at its paths; return it as read back."""
    write_manifest(frame, path)
    if touch:
        for relative in frame["path"]:
            file = path.parent / relative
            file.parent.mkdir(parents=True, exist_ok=True)
            file.touch()
    return read_manifest(path)


def counts_by_class(frame):
    return mix_summary(frame)["synthetic"].drop("total").to_dict()


# -------------------------------------------------------------------------------------------------- plans
def test_real_classes_follow_the_labels():
    classes = real_classes(real_manifest()).value_counts().to_dict()
    assert classes == {"normal": 32, "metastasis": 6, "amyloidosis": 4}  # grade 1 is negative: normal


def test_plans_ratio_balance_and_counts():
    real = {"normal": 32, "metastasis": 6, "amyloidosis": 4}
    assert plan_counts(real, ratio=1.0) == {"normal": 32, "metastasis": 6, "amyloidosis": 4}
    assert plan_counts(real, ratio=0.5, conditions=["metastasis"]) == {"metastasis": 3}
    assert plan_counts(real, balance="per-class") == {"metastasis": 26, "amyloidosis": 28}
    # a budget of 0.5 x 42 = 21 scans goes to the smallest classes first: 4+11 = 6+10 = 16 (rest 1 -> first)
    assert plan_counts(real, ratio=0.5, balance="per-class") == {"metastasis": 10, "amyloidosis": 11}
    big = plan_counts(real, ratio=2.0, balance="per-class")
    assert sum(big.values()) == 84
    finals = [real[c] + big.get(c, 0) for c in real]
    assert max(finals) - min(finals) <= 1
    assert plan_counts(real, counts={"normal": 5, "amyloidosis-g3": 7, "metastasis": 0}) == \
        {"normal": 5, "amyloidosis-g3": 7}


@pytest.mark.parametrize("kwargs,message", [
    ({}, "say how much to mix"),
    ({"ratio": -1.0}, "ratio must be"),
    ({"counts": {"fracture": 3}}, "unknown condition"),
    ({"counts": {"normal": 3}, "ratio": 1.0}, "not both"),
    ({"ratio": 1.0, "conditions": ["tumour"]}, "unknown condition"),
    ({"balance": "global"}, "unknown balance"),
])
def test_bad_plans(kwargs, message):
    with pytest.raises(BadInputError, match=message):
        plan_counts({"normal": 3, "metastasis": 1}, **kwargs)


# ---------------------------------------------------------------------------------------------------- mix
def test_mix_by_ratio_keeps_real_rows_and_adds_provenance():
    real, synthetic = real_manifest(), synthetic_manifest()
    mixed = mix(real, synthetic, ratio=1.0, seed=0)
    assert list(mixed["study_id"][: len(real)]) == list(real["study_id"])
    assert counts_by_class(mixed) == {"normal": 32, "metastasis": 6, "amyloidosis": 4}
    added = mixed[is_synthetic(mixed)]
    assert (added["synthetic"] == 1).all() and (added["source"] == "0123abcd").all() and added["seed"].notna().all()
    assert (added.loc[added["condition"] == "amyloidosis", "amyloid_grade"] >= 2).all()
    first = mixed.iloc[: len(real)]
    assert (first["synthetic"] == 0).all() and (first["source"] == "real").all()


def test_mix_is_deterministic_and_nested_in_the_seed():
    real, synthetic = real_manifest(), synthetic_manifest()
    a = mix(real, synthetic, ratio=1.0, seed=7)
    assert a.equals(mix(real, synthetic, ratio=1.0, seed=7))
    assert not a.equals(mix(real, synthetic, ratio=1.0, seed=8))
    small = set(mix(real, synthetic, counts={"metastasis": 5, "normal": 10}, seed=7)["study_id"])
    large = set(mix(real, synthetic, counts={"metastasis": 9, "normal": 10}, seed=7)["study_id"])
    assert small < large  # more metastases keep the earlier ones ...
    normals = lambda ids: {i for i in ids if "-normal-" in i}  # noqa: E731
    assert normals(small) == normals(large)  # ... and leave the other classes alone


def test_balance_equalizes_classes_and_counts_pick_grades():
    real, synthetic = real_manifest(), synthetic_manifest()
    balanced = mix_summary(mix(real, synthetic, balance="per-class"))
    totals = balanced["real"] + balanced["synthetic"]
    assert totals["normal"] == totals["metastasis"] == totals["amyloidosis"] == 32
    graded = mix(real, synthetic, counts={"amyloidosis-g3": 12})
    assert (graded[is_synthetic(graded)]["amyloid_grade"] == 3).all() and is_synthetic(graded).sum() == 12


def test_mix_errors_name_what_is_missing():
    real = real_manifest()
    no_amyloid = synthetic_manifest({"normal": 40, "metastasis": 40})
    with pytest.raises(BadInputError, match="no synthetic 'amyloidosis' scans, 4 needed"):
        mix(real, no_amyloid, ratio=1.0)
    with pytest.raises(BadInputError, match="only 40 synthetic 'metastasis' scans, 60 needed"):
        mix(real, synthetic_manifest(), counts={"metastasis": 60})
    with pytest.raises(BadInputError, match="needs a 'condition'"):
        mix(real, synthetic_manifest().drop(columns="condition"), ratio=1.0)
    marked_real = synthetic_manifest().assign(synthetic=0)
    with pytest.raises(BadInputError, match="marked real"):
        mix(real, marked_real, ratio=1.0)
    liar = synthetic_manifest()
    liar.loc[0, "metastasis"] = 1
    with pytest.raises(BadInputError, match="contradicts"):
        mix(real, liar, ratio=1.0)
    with pytest.raises(BadInputError, match="in both manifests"):
        mix(real, pd.concat([synthetic_manifest(), real.head(1).assign(condition="normal")]), ratio=1.0)
    with pytest.raises(BadInputError, match="no labelled scans"):
        mix(real.drop(columns=["metastasis", "amyloid_grade"]), synthetic_manifest(), ratio=1.0)


# -------------------------------------------------------------------------------------------------- guards
def test_guard_refuses_synthetic_scans_in_validation_and_test():
    real = real_manifest()
    assert_no_synthetic(real, "test")
    assert not is_synthetic(real).any()
    for sneaky in (real.assign(synthetic=[1] + [0] * (len(real) - 1)),
                   real.assign(source=["0123abcd"] + [None] * (len(real) - 1)),
                   real.assign(study_id=["syn-x"] + list(real["study_id"][1:]))):
        with pytest.raises(BadInputError, match="test set contains 1 synthetic scan"):
            assert_no_synthetic(sneaky, "test")
    assert_no_synthetic(real.assign(source="real", synthetic=0), "validation")


# ------------------------------------------------------------------------------------------------ paths
def test_rebased_paths_resolve_from_the_new_folder(tmp_path):
    real = written(real_manifest(), tmp_path / "data" / "site-b" / "manifest.csv")
    out = tmp_path / "elsewhere" / "mixed"
    moved = rebase_paths(real, out)
    assert all(scan_path(moved, i).resolve() == scan_path(real, i).resolve() for i in real.index)


# --------------------------------------------------------------------------------------------------- CLI
def test_cli_mix_end_to_end(tmp_path, capsys):
    real_path, synthetic_path = tmp_path / "real" / "manifest.csv", tmp_path / "synth" / "manifest.csv"
    written(real_manifest(), real_path)
    written(synthetic_manifest(), synthetic_path)
    out = tmp_path / "mixed" / "manifest.csv"
    argv = ["mix", "--real", str(real_path), "--synthetic", str(synthetic_path), "--ratio", "1.0", "--balance",
            "per-class", "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "synthetic" in printed and str(out) in printed
    mixed = read_manifest(out)
    assert len(mixed) == 42 + 42 and is_synthetic(mixed).sum() == 42
    assert all(scan_path(mixed, i).is_file() for i in mixed.index)  # every path still resolves
    settings = json.loads(out.with_suffix(".mix.json").read_text())
    assert settings["seed"] == 3 and settings["balance"] == "per-class"
    assert settings["scans"]["total"] == {"real": 42, "synthetic": 42}
    first = out.read_bytes()
    assert main(argv) == 0 and out.read_bytes() == first  # same seed, same file
    capsys.readouterr()


@pytest.mark.parametrize("extra,message", [
    ([], "say how much to mix"),
    (["--counts", "normal=10", "--balance", "per-class"], "cannot be combined"),
    (["--counts", "normal=ten"], "not condition=number"),
    (["--counts", "metastasis=500"], "only 40 synthetic 'metastasis' scans"),
])
def test_cli_mix_bad_input_exits_2(tmp_path, capsys, extra, message):
    real_path, synthetic_path = tmp_path / "real.csv", tmp_path / "synth.csv"
    written(real_manifest(), real_path, touch=False)
    written(synthetic_manifest(), synthetic_path, touch=False)
    code = main(["mix", "--real", str(real_path), "--synthetic", str(synthetic_path), "--out",
                 str(tmp_path / "out" / "manifest.csv"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_cli_mix_several_synthetic_manifests(tmp_path, capsys):
    real_path = tmp_path / "real" / "manifest.csv"
    written(real_manifest(), real_path)
    first = synthetic_manifest({"metastasis": 5})
    second = synthetic_manifest({"metastasis": 5}).assign(
        study_id=lambda f: f["study_id"].str.replace("0123abcd", "89abcdef"), source="89abcdef")
    written(first, tmp_path / "s1" / "manifest.csv")
    written(second, tmp_path / "s2" / "manifest.csv")
    out = tmp_path / "mixed.csv"
    assert main(["mix", "--real", str(real_path), "--synthetic", str(tmp_path / "s1" / "manifest.csv"),
                 str(tmp_path / "s2" / "manifest.csv"), "--counts", "metastasis=10", "--out", str(out)]) == 0
    mixed = read_manifest(out)
    assert set(mixed.loc[is_synthetic(mixed), "source"]) == {"0123abcd", "89abcdef"}
    assert all(scan_path(mixed, i).is_file() for i in mixed.index)
    capsys.readouterr()
    np.testing.assert_array_equal(mixed["synthetic"].to_numpy(dtype=int)[:42], 0)
