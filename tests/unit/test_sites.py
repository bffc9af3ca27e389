"""evaluation/sites.py: site matrix, arm comparison with Wilcoxon and DeLong, leave-one-site-out."""

import numpy as np
import pandas as pd
import pytest

from evaluation import metrics, sites
from synthscan.errors import BadInputError
from synthscan.io.manifest import read_manifest, scan_path, write_manifest

SITES = ("site-c", "site-d", "site-e")


def predictions(rng, seeds=(0, 1, 2, 3, 4), n_per_site=120, noise_a=1.6, noise_b=0.8) -> pd.DataFrame:
    """Two arms scoring the same test scans; arm "mixed" is less noisy than arm "real" at every site."""
    rows = []
    truth = {site: (rng.random(n_per_site) < 0.3).astype(int) for site in SITES}
    for seed in seeds:
        for site in SITES:
            labels = truth[site]
            for arm, noise in (("real", noise_a), ("mixed", noise_b)):
                scores = labels + rng.normal(scale=noise, size=n_per_site)
                rows += [{"study_id": f"{site}-{i:04d}", "site": site, "task": "metastasis", "label": label,
                          "score": score, "seed": seed, "arm": arm}
                         for i, (label, score) in enumerate(zip(labels, scores))]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- site matrix
def test_site_matrix_has_every_run_site_and_pooled(rng):
    frame = predictions(rng, seeds=(0, 1))
    matrix = sites.site_matrix(frame)
    assert len(matrix) == 2 * 2 * (len(SITES) + 1)
    run = matrix[(matrix["arm"] == "mixed") & (matrix["seed"] == 1)].set_index("site")
    assert list(run.index) == [*SITES, "pooled"]
    assert run.loc["pooled", "n"] == 3 * 120
    part = frame[(frame["arm"] == "mixed") & (frame["seed"] == 1) & (frame["site"] == "site-d")]
    expected = metrics.delong_auc(part["label"], part["score"])
    assert (run.loc["site-d", "auc"], run.loc["site-d", "ci_low"], run.loc["site-d", "ci_high"]) == \
        pytest.approx((expected.estimate, expected.ci_low, expected.ci_high))
    markdown = sites.site_matrix_markdown(matrix)
    lines = markdown.splitlines()
    assert lines[0] == "| site | mixed | real |" and lines[-1].startswith("| pooled |")
    assert "(2 seeds)" in lines[2] and "±" in lines[2]
    single = sites.site_matrix_markdown(matrix[matrix["seed"] == 0])
    assert "[" in single.splitlines()[2]  # one seed: AUC [CI]


def test_site_matrix_states_why_an_auc_is_undefined(rng):
    frame = predictions(rng, seeds=(0,))
    frame.loc[frame["site"] == "site-e", "label"] = 0
    matrix = sites.site_matrix(frame).set_index(["arm", "site"])
    assert pd.isna(matrix.loc[("real", "site-e"), "auc"])
    assert "only one class" in matrix.loc[("real", "site-e"), "note"]
    markdown = sites.site_matrix_markdown(matrix.reset_index())
    assert "undefined: one class only" in markdown and "nan" not in markdown.lower()


# ---------------------------------------------------------------------------------------- arm comparison
def test_compare_arms_gains_and_paired_tests(rng):
    frame = predictions(rng, n_per_site=200, noise_b=0.5)  # a gap wide enough that every pair shows it
    result = sites.compare_arms(frame, "real", "mixed")
    assert result.n_pairs == 15 and result.n_seeds == 5 and result.n_sites == 3
    pairs = result.per_pair
    assert (pairs["gain"] > 0).all()
    # all 15 signed ranks positive: the exact two-sided signed-rank p-value is 2 / 2^15
    assert result.p_value == pytest.approx(2 / 2 ** 15, rel=1e-9)
    assert result.estimate == pytest.approx(pairs["gain"].mean())
    assert result.relative == pytest.approx(((pairs["auc_b"] - pairs["auc_a"]) / pairs["auc_a"]).mean())
    assert result.ci_low < result.estimate < result.ci_high
    one = pairs[(pairs["seed"] == 2) & (pairs["site"] == "site-c")].iloc[0]
    subset = frame[(frame["seed"] == 2) & (frame["site"] == "site-c")]
    test = metrics.delong_test(subset[subset["arm"] == "real"]["label"], subset[subset["arm"] == "real"]["score"],
                               subset[subset["arm"] == "mixed"]["score"])
    assert one["delong_p"] == pytest.approx(test.p_value) and one["delong_low"] == pytest.approx(test.ci_low)
    assert (pairs["delong_p_holm"] >= pairs["delong_p"] - 1e-15).all()
    per_site = result.per_site.set_index("site")
    assert list(per_site.index) == list(SITES) and (per_site["n_seeds"] == 5).all()
    assert per_site.loc["site-d", "gain"] == pytest.approx(pairs[pairs["site"] == "site-d"]["gain"].mean())
    text = result.summary()
    assert "mixed vs real over 15 seed x site pair(s)" in text and "Wilcoxon signed-rank p < 0.0001" in text


def test_compare_arms_without_a_difference(rng):
    frame = predictions(rng, seeds=(0, 1))
    copy = frame[frame["arm"] == "real"].assign(arm="copy")
    result = sites.compare_arms(pd.concat([frame, copy]), "real", "copy")
    assert result.estimate == 0 and result.p_value == 1.0
    assert (result.per_pair["delong_p"] == 1.0).all()


def test_compare_arms_on_different_scans_skips_delong_only(rng):
    frame = predictions(rng, seeds=(0, 1, 2))
    frame = frame[~((frame["arm"] == "mixed") & frame["study_id"].str.endswith("7"))]
    result = sites.compare_arms(frame, "real", "mixed")
    assert result.per_pair["delong_p"].isna().all()
    assert result.per_pair["note"].str.contains("different scans").all()
    assert result.n_pairs == 9 and result.p_value < 0.01


def test_compare_arms_with_one_pair_says_so_instead_of_nan(rng):
    frame = predictions(rng, seeds=(0,))
    result = sites.compare_arms(frame[frame["site"] == "site-c"], "real", "mixed")
    assert result.n_pairs == 1 and "one pair" in result.summary() and "nan" not in result.summary()


def test_compare_arms_leaves_out_a_one_class_site(rng):
    frame = predictions(rng, seeds=(0, 1))
    frame.loc[frame["site"] == "site-e", "label"] = 1
    result = sites.compare_arms(frame, "real", "mixed")
    assert result.n_sites == 2 and result.n_pairs == 4
    skipped = result.per_pair[result.per_pair["site"] == "site-e"]
    assert skipped["gain"].isna().all() and skipped["note"].str.contains("only one class").all()


@pytest.mark.parametrize("change,message", [
    (lambda f: f.drop(columns="seed"), "lack column"),
    (lambda f: pd.concat([f, f.head(3).assign(task="amyloidosis")]), "choose one"),
    (lambda f: f.assign(arm=np.where(f["arm"] == "mixed", "other", f["arm"])), "no predictions of arm 'mixed'"),
    (lambda f: f.assign(seed=np.where(f["arm"] == "mixed", f["seed"] + 100, f["seed"])), "share no seed"),
    (lambda f: pd.concat([f, f.head(1)]), "predicted twice"),
    (lambda f: f.assign(score=np.where(np.arange(len(f)) == 5, np.nan, f["score"])), "blank 'score'"),
])
def test_compare_arms_bad_input(rng, change, message):
    with pytest.raises(BadInputError, match=message):
        sites.compare_arms(change(predictions(rng, seeds=(0, 1), n_per_site=30)), "real", "mixed")


def test_wilcoxon_matches_scipy_with_mixed_signs():
    from scipy.stats import wilcoxon

    differences = np.array([0.03, -0.01, 0.05, 0.02, 0.04, -0.02, 0.06, 0.01])
    assert sites.wilcoxon_p(differences) == pytest.approx(wilcoxon(differences).pvalue)
    assert sites.wilcoxon_p(np.zeros(4)) == 1.0


# ------------------------------------------------------------------------------------ leave one site out
def manifest(with_synthetic=True) -> pd.DataFrame:
    rows = [{"study_id": f"{site}-{i}", "patient_id": f"{site}-p{i}", "site": site, "path": f"{site}/{i}.dcm",
             "views": "anterior+posterior", "metastasis": i % 2} for site in SITES for i in range(4)]
    if with_synthetic:
        rows += [{"study_id": f"syn-0123abcd-normal-{i:06d}", "patient_id": f"syn-{i}", "site": None,
                  "path": f"synth/{i}.dcm", "views": "anterior+posterior", "metastasis": 0, "synthetic": 1,
                  "source": "0123abcd", "seed": i, "condition": "normal"} for i in range(3)]
    return pd.DataFrame(rows)


def test_leave_one_site_out_folds(tmp_path):
    frame = manifest()
    folds = sites.leave_one_site_out(frame)
    assert [fold.site for fold in folds] == list(SITES)
    for fold in folds:
        assert set(fold.test["site"]) == {fold.site} and len(fold.test) == 4
        assert fold.site not in set(fold.train["site"].dropna())
        assert fold.train["study_id"].str.startswith("syn-").sum() == 3  # synthetic scans train every fold
        assert len(fold.train) + len(fold.test) == len(frame)
    assert [fold.site for fold in sites.leave_one_site_out(frame, sites=["site-d"])] == ["site-d"]


def test_leave_one_site_out_writes_manifests_whose_paths_resolve(tmp_path):
    source = tmp_path / "data" / "manifest.csv"
    write_manifest(manifest(), source)
    frame = read_manifest(source)
    train_path, test_path = sites.leave_one_site_out(frame)[0].write(tmp_path / "folds" / "site-c")
    train, test = read_manifest(train_path), read_manifest(test_path)
    assert len(train) == 11 and len(test) == 4
    assert scan_path(test, test.index[0]).resolve() == (tmp_path / "data" / "site-c" / "0.dcm").resolve()


def test_leave_one_site_out_refuses_leaks_and_bad_sites():
    shared = manifest()
    shared.loc[4, "patient_id"] = shared.loc[0, "patient_id"]  # one patient at site-c and site-d
    with pytest.raises(BadInputError, match="several sites"):
        sites.leave_one_site_out(shared)
    with pytest.raises(BadInputError, match="no scans from site"):
        sites.leave_one_site_out(manifest(), sites=["site-z"])
    with pytest.raises(BadInputError, match="at least two sites"):
        sites.leave_one_site_out(manifest()[lambda f: f["site"].isin(["site-c"]) | f["site"].isna()])
    blank = manifest(with_synthetic=False)
    blank.loc[0, "site"] = None
    with pytest.raises(BadInputError, match="without a site"):
        sites.leave_one_site_out(blank)
