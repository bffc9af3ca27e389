import pandas as pd
import pytest

from synthscan.errors import BadInputError
from synthscan.io.manifest import COLUMNS, grouped_split, labels_for_task, read_manifest, write_manifest


def _frame(n=40, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    patients = [f"p{i // 2:03d}" for i in range(n)]  # two studies per patient
    return pd.DataFrame({"study_id": [f"s{i:03d}" for i in range(n)], "patient_id": patients,
                         "path": [f"dicom/s{i:03d}.dcm" for i in range(n)], "views": "anterior+posterior",
                         "metastasis": [int(int(p[1:]) % 4 == 0) for p in patients],
                         "amyloid_grade": rng.integers(0, 4, n), "site": "a"})


def test_round_trip_keeps_columns_and_types(tmp_path):
    frame = _frame().assign(extra="x")
    write_manifest(frame, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert list(back.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert back.columns[-1] == "extra"
    assert str(back["metastasis"].dtype) == "Int64"
    assert back["time_days"].isna().all()
    assert labels_for_task(back, "amyloidosis").tolist() == (frame["amyloid_grade"] >= 2).astype(int).tolist()


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.drop(columns="patient_id"), "patient_id"),
    (lambda f: f.assign(study_id=["s000"] * len(f)), "duplicate study_id 's000'"),
    (lambda f: f.assign(amyloid_grade=7), "'amyloid_grade', row 2: unknown value 7"),
    (lambda f: f.assign(metastasis="yes"), "'metastasis', row 2: 'yes' is not a number"),
    (lambda f: f.assign(views="lateral"), "'views'"),
])
def test_bad_manifests_are_named(tmp_path, edit, message):
    path = tmp_path / "m.csv"
    edit(_frame()).to_csv(path, index=False)
    with pytest.raises(BadInputError, match=message) as info:
        read_manifest(path)
    assert "m.csv" in str(info.value)


def test_missing_labels_are_refused(tmp_path):
    frame = _frame()
    frame["metastasis"] = frame["metastasis"].astype(object)
    frame.loc[3, "metastasis"] = None
    write_manifest(frame, tmp_path / "m.csv")
    with pytest.raises(BadInputError, match="metastasis"):
        labels_for_task(read_manifest(tmp_path / "m.csv"), "metastasis")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_split_keeps_patients_together_and_stratifies(seed):
    frame = _frame(200, seed)
    train, test = grouped_split(frame, (0.8, 0.2), stratify="metastasis", seed=seed)
    assert set(train.patient_id).isdisjoint(test.patient_id)
    assert len(train) + len(test) == len(frame)
    assert 0.1 <= len(test) / len(frame) <= 0.3
    assert abs(train.metastasis.mean() - test.metastasis.mean()) < 0.1
    again = grouped_split(frame, (0.8, 0.2), stratify="metastasis", seed=seed)
    assert again[1].study_id.tolist() == test.study_id.tolist()
