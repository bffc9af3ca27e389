"""``synthscan mix`` on what ``synthscan sample`` writes (tiny random model) and real DICOM files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factories import make_scan
from synthscan.cli import main
from synthscan.errors import BadInputError
from synthscan.io.dicom import read_scan, write_scan
from synthscan.io.manifest import read_manifest, scan_path, write_manifest
from synthscan.mix import assert_no_synthetic, is_synthetic
from synthscan.model.tiny import tiny_model
from synthscan.sample import SampleRequest, sample


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mix-sample")
    model = folder / "model"
    tiny_model(seed=1).save_pretrained(model)
    for condition, n in (("normal", 3), ("metastasis", 4)):
        sample(SampleRequest(condition, n, folder / "synth", seed=0, batch_size=4), model, progress=False)
    return folder / "synth" / "manifest.csv"


def test_mix_sampled_scans_into_real_dicom_training_set(sampled, tmp_path, rng, capsys):
    rows = []
    for i, metastasis in enumerate([0, 0, 0, 0, 1, 1]):
        path = tmp_path / "real" / "scans" / f"{i}.dcm"
        write_scan(path, make_scan(rng))
        rows.append({"study_id": f"r{i}", "patient_id": f"p{i}", "site": "site-b", "path": f"scans/{i}.dcm",
                     "views": "anterior+posterior", "metastasis": metastasis, "amyloid_grade": 0})
    write_manifest(pd.DataFrame(rows), tmp_path / "real" / "manifest.csv")
    out = tmp_path / "runs" / "mixed" / "manifest.csv"
    assert main(["mix", "--real", str(tmp_path / "real" / "manifest.csv"), "--synthetic", str(sampled),
                 "--balance", "per-class", "--seed", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    mixed = read_manifest(out)
    added = mixed[is_synthetic(mixed)]
    assert list(added["condition"]) == ["metastasis", "metastasis"]  # 4 normal vs 2 metastasis: +2
    assert added["source"].str.len().min() >= 8 and added["seed"].notna().all()
    for index in mixed.index:  # every row, real and synthetic, opens from the mixed manifest's folder
        assert read_scan(scan_path(mixed, index)).counts.shape[0] == 2
    with pytest.raises(BadInputError, match="validation set contains 2 synthetic"):
        assert_no_synthetic(mixed, "validation")
    assert np.array_equal(mixed["synthetic"].to_numpy(dtype=int), [0] * 6 + [1] * 2)
