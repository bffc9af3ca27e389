"""Backbones for one and two views, save/load, losses, and training: learning, early stopping, resume."""

import json

import numpy as np
import pytest
import torch

from classify_toy import make_cohort
from evaluation import training
from evaluation.classifier import (ARCHS, ClassifierConfig, build_model, load_model, load_run, probabilities,
                                   read_config, save_model, score_from_probabilities)
from evaluation.training import loss_function, prepare_out, train_run
from synthscan.errors import BadInputError
from synthscan.io.manifest import read_manifest

TINY = dict(arch="tiny", grid=(64, 16), batch_size=8, eval_every=5, steps=30)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_backbone_takes_two_views_and_one(arch):
    torch.manual_seed(0)
    grid = (128, 32) if arch == "densenet121" else (64, 16)
    two = build_model(ClassifierConfig(arch=arch, grid=grid)).eval()
    assert two(torch.rand(2, 2, *grid)).shape == (2, 1)
    if arch in ("tiny", "resnet18"):
        one = build_model(ClassifierConfig(arch=arch, grid=(64, 16), views=("anterior",))).eval()
        assert one(torch.rand(2, 1, 64, 16)).shape == (2, 1)
        late = build_model(ClassifierConfig(arch=arch, grid=(64, 16), fusion="views", task="amyloid_grade")).eval()
        assert late(torch.rand(3, 2, 64, 16)).shape == (3, 4)


def test_late_fusion_shares_one_backbone_across_views():
    model = build_model(ClassifierConfig(arch="tiny", fusion="views")).eval()
    x = torch.rand(1, 2, 64, 16)
    swapped = x.flip(1)
    # the same backbone on each view: swapping views permutes the halves of the pooled features
    features = lambda t: model.features(t.reshape(2, 1, 64, 16)).mean(dim=(2, 3)).reshape(1, -1)
    width = features(x).shape[1] // 2
    torch.testing.assert_close(features(swapped), torch.cat([features(x)[:, width:], features(x)[:, :width]], 1))


def test_scores_are_positive_probability_and_grade_two_or_more():
    probs = probabilities(torch.tensor([[0.0], [2.0]])).numpy()
    np.testing.assert_allclose(probs.sum(1), 1)
    assert score_from_probabilities(probs, "metastasis")[1] == pytest.approx(1 / (1 + np.exp(-2)))
    grades = np.array([[0.1, 0.2, 0.3, 0.4]])
    assert score_from_probabilities(grades, "amyloid_grade")[0] == pytest.approx(0.7)


def test_class_weight_weighs_positive_errors_ten_times():
    logits, labels = torch.zeros(2, 1), torch.tensor([1, 0])
    plain = loss_function(ClassifierConfig(strategy="original"))
    weighted = loss_function(ClassifierConfig(strategy="class-weight"))
    # positive and negative terms are equal at logit 0; the weight multiplies the positive one
    assert weighted(logits, labels).item() == pytest.approx(plain(logits, labels).item() * 11 / 2)
    grades = loss_function(ClassifierConfig(strategy="class-weight", task="amyloid_grade"))
    assert grades(torch.zeros(2, 4), torch.tensor([0, 3])).item() == pytest.approx(np.log(4))


def test_save_load_round_trip_and_config_checks(tmp_path):
    config = ClassifierConfig(**TINY, seed=5, arm="real-original")
    torch.manual_seed(0)
    model = build_model(config).eval()
    save_model(model, config, tmp_path)
    loaded, loaded_config = load_model(tmp_path)
    assert loaded_config == config
    x = torch.rand(2, 2, 64, 16)
    torch.testing.assert_close(loaded(x), model(x))
    data = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**data, "learning_rate": 1}))
    with pytest.raises(BadInputError, match="unknown config key"):
        read_config(tmp_path)
    with pytest.raises(BadInputError, match="unknown arch"):
        ClassifierConfig(arch="alexnet")
    with pytest.raises(BadInputError, match="densenet121 needs a grid of at least 32"):
        ClassifierConfig(arch="densenet121", grid=(64, 16))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    return read_manifest(make_cohort(folder / "train", 60, 0.5, seed=11))


def test_training_learns_the_toy_task_and_writes_the_run(cohort, tmp_path):
    config = ClassifierConfig(**TINY, seed=1)
    summary = train_run(config, cohort, None, tmp_path / "run", tmp_path / "cache", progress=False)
    for name in ("model.safetensors", "config.json", "training_curve.png", "history.csv", "val_predictions.csv",
                 "train_patients.txt", "summary.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert summary["val_auc"] >= 0.9
    val = __import__("pandas").read_csv(tmp_path / "run" / "val_predictions.csv")
    assert list(val.columns[:7]) == ["study_id", "site", "task", "label", "score", "seed", "arm"]
    train_ids = set((tmp_path / "run" / "train_patients.txt").read_text().split())
    assert not train_ids & set(cohort.set_index("study_id").loc[val["study_id"], "patient_id"])
    # rerunning a finished run does nothing; another config in the same folder is refused
    assert prepare_out(config, tmp_path / "run") == "done"
    with pytest.raises(BadInputError, match="different config \\(seed differ"):
        prepare_out(ClassifierConfig(**TINY, seed=2), tmp_path / "run")


def test_resume_after_interruption_gives_the_same_model(cohort, tmp_path, monkeypatch):
    config = ClassifierConfig(**{**TINY, "steps": 20}, seed=2)
    train_run(config, cohort, None, tmp_path / "straight", tmp_path / "cache", progress=False)

    calls = {"n": 0}
    real_batch = training.TrainingStream.batch

    def interrupted(self, counts, step):
        calls["n"] += 1
        if calls["n"] > 12:
            raise KeyboardInterrupt
        return real_batch(self, counts, step)

    monkeypatch.setattr(training.TrainingStream, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, cohort, None, tmp_path / "resumed", tmp_path / "cache", progress=False)
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["step-0000005.pt",
                                                                                         "step-0000010.pt"]
    monkeypatch.setattr(training.TrainingStream, "batch", real_batch)
    calls["n"] = 0
    monkeypatch.setattr(training.TrainingStream, "batch",
                        lambda self, c, s: (calls.__setitem__("n", calls["n"] + 1), real_batch(self, c, s))[1])
    train_run(config, cohort, None, tmp_path / "resumed", tmp_path / "cache", progress=False)
    assert calls["n"] == 10  # steps 11-20 only: nothing replayed
    a, b = load_model(tmp_path / "straight")[0], load_model(tmp_path / "resumed")[0]
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)


def test_early_stopping_stops_after_patience(cohort, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "validation_score", lambda config, probs, labels: (0.5, 1.0, "val_auc"))
    config = ClassifierConfig(**{**TINY, "steps": 100, "patience": 2}, seed=3)
    summary = train_run(config, cohort, None, tmp_path / "run", tmp_path / "cache", progress=False)
    assert summary["steps_run"] == 15 and summary["stopped_early"] and summary["best_step"] == 5


def test_equal_steps_by_default_and_equal_epochs_on_request(cohort, tmp_path):
    steps = ClassifierConfig(**{**TINY, "steps": 7, "eval_every": 100}, strategy="augment-all")
    assert train_run(steps, cohort, None, tmp_path / "a", tmp_path / "cache", progress=False)["steps_run"] == 7
    epochs = ClassifierConfig(**{**TINY, "eval_every": 100}, budget="epochs", epochs=1, strategy="augment-positives")
    summary = train_run(epochs, cohort, None, tmp_path / "b", tmp_path / "cache", progress=False)
    assert summary["step_budget"] > -(-summary["n_train"] // 8)  # the 10x positive copies enlarge an epoch


def test_cross_validation_trains_one_model_per_fold(cohort, tmp_path):
    config = ClassifierConfig(**{**TINY, "steps": 5}, folds=3, task="metastasis")
    train_run(config, cohort, None, tmp_path / "cv", tmp_path / "cache", progress=False)
    models, loaded = load_run(tmp_path / "cv")
    assert len(models) == 3 and loaded.folds == 3
    oof = __import__("pandas").read_csv(tmp_path / "cv" / "cv_predictions.csv")
    assert sorted(oof["study_id"]) == sorted(cohort["study_id"])  # every scan predicted once, out of fold
    with pytest.raises(BadInputError, match="drop --val"):
        train_run(config, cohort, cohort, tmp_path / "cv2", tmp_path / "cache", progress=False)
