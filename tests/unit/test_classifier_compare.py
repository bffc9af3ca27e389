"""The comparison report and the per-run test summary, on hand-made predictions with a known answer."""

import numpy as np
import pandas as pd
import pytest

from evaluation import metrics, sites
from evaluation.compare import (compare_arms, pair_by_seed, predictions_file, read_arm, roc_points,
                                write_test_summary)
from synthscan.errors import BadInputError


def _run(folder, arm, seed, quality, rng, sites_n=(("site-c", 40), ("site-d", 30))):
    """Predictions whose scores separate the classes better as ``quality`` grows."""
    rows = []
    for site, n in sites_n:
        labels = (np.arange(n) % 3 == 0).astype(int)
        noise = np.random.default_rng([seed, len(site)]).normal(size=n)  # shared by both arms: paired
        scores = quality * labels + noise + 0.3 * rng.normal(size=n)
        rows += [{"study_id": f"{site}-{i}", "site": site, "task": "metastasis", "label": int(labels[i]),
                  "score": float(scores[i]), "seed": seed, "arm": arm} for i in range(n)]
    folder.mkdir(parents=True)
    (folder / "test").mkdir()
    pd.DataFrame(rows).to_csv(folder / "test" / "predictions.csv", index=False)
    return folder


@pytest.fixture
def arms(tmp_path, rng):
    for seed in (0, 1, 2):
        _run(tmp_path / "runs" / f"real-seed{seed}", "real-original", seed, 0.8, rng)
        _run(tmp_path / "runs" / f"mixed-seed{seed}", "mixed-original", seed, 2.0, rng)
    return tmp_path / "runs"


def test_report_states_the_gain_computed_by_sites(arms, tmp_path):
    report = compare_arms([f"{arms}/real-seed*"], [f"{arms}/mixed-seed*"], tmp_path / "report")
    text = report.read_text()
    frames = [pd.read_csv(p) for p in sorted(arms.glob("*/test/predictions.csv"))]
    expected = sites.compare_arms(pd.concat(frames), "real-original", "mixed-original")
    assert expected.estimate > 0.1  # the better-separating arm wins
    assert expected.summary() in text and "seeds 0, 1, 2" in text
    gains = pd.read_csv(tmp_path / "report" / "gains.csv")
    np.testing.assert_allclose(gains["gain"], expected.per_pair["gain"], rtol=1e-5)
    assert "nan" not in text.lower()
    for name in ("roc_site-c.png", "roc_site-d.png", "roc_pooled.png", "gains.png", "site_matrix.csv"):
        assert (tmp_path / "report" / name).is_file()


def test_unpaired_seeds_are_named_and_left_out(arms, tmp_path):
    import shutil

    shutil.rmtree(arms / "mixed-seed2")
    text = compare_arms([f"{arms}/real-seed*"], [f"{arms}/mixed-seed*"], tmp_path / "report").read_text()
    assert "seeds 0, 1." in text and "Unpaired seeds left out: 2" in text


def test_arms_must_be_comparable(arms, tmp_path):
    with pytest.raises(BadInputError, match="nothing matches"):
        read_arm([f"{arms}/none*"], "A")
    a, b = read_arm([f"{arms}/real-seed0"], "A"), read_arm([f"{arms}/mixed-seed1"], "B")
    with pytest.raises(BadInputError, match="no seed in common"):
        pair_by_seed(a, b)
    other = pd.read_csv(arms / "mixed-seed0" / "test" / "predictions.csv")
    other.iloc[:5].to_csv(arms / "mixed-seed0" / "test" / "predictions.csv", index=False)
    with pytest.raises(BadInputError, match="different test scans"):
        pair_by_seed(read_arm([f"{arms}/real-seed0"], "A"), read_arm([f"{arms}/mixed-seed0"], "B"))
    (arms / "real-seed0" / "more").mkdir()
    (arms / "real-seed0" / "more" / "predictions.csv").write_text("x\n")
    with pytest.raises(BadInputError, match="2 predictions.csv files"):
        predictions_file(arms / "real-seed0")


def test_roc_points_run_from_the_origin_to_the_top_right():
    fpr, tpr = roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_test_summary_uses_the_validation_threshold_and_names_single_class_sites(tmp_path, rng):
    frame = pd.read_csv(_run(tmp_path / "run", "real-original", 0, 2.0, rng) / "test" / "predictions.csv")
    frame = frame[~((frame["site"] == "site-d") & (frame["label"] == 1))]  # site-d: negatives only
    threshold = metrics.choose_threshold(frame["label"], frame["score"])
    text = write_test_summary(frame, tmp_path / "out", threshold=threshold)
    assert "AUC undefined: only negatives (n=20)" in text and "nan" not in text.lower()
    table = pd.read_csv(tmp_path / "out" / "summary.csv")
    site_c = frame[frame["site"] == "site-c"]
    assert table.loc[table["site"] == "site-c", "auc"].item() == pytest.approx(metrics.auc(site_c["label"],
                                                                                          site_c["score"]))
    expected = metrics.diagnostic_metrics(site_c["label"], site_c["score"], threshold).sensitivity.estimate
    assert table.loc[table["site"] == "site-c", "sensitivity"].item() == pytest.approx(expected)
    with pytest.raises(BadInputError, match="no AUC is defined.*only negatives"):
        write_test_summary(frame[frame["site"] == "site-d"], tmp_path / "out2")


def test_test_summary_puts_the_hcl_baseline_next_to_the_network(tmp_path, rng):
    frame = pd.read_csv(_run(tmp_path / "run", "real-original", 0, 2.0, rng) / "test" / "predictions.csv")
    baseline = frame.assign(score=frame["label"] * 0.5 + rng.normal(size=len(frame)), arm="hcl")
    text = write_test_summary(frame, tmp_path / "out", baseline=baseline)
    expected = metrics.delong_test(frame["label"], baseline["score"], frame["score"])
    assert "H/CL AUC" in text and metrics.p_text(expected.p_value) in text
