"""``synthscan reader-study make / simulate / score`` end to end on a tiny DICOM cohort; exit 2 on bad input
with nothing overwritten; the reader_study package never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from synthscan.cli import main
from synthscan.io.dicom import write_scan
from synthscan.io.manifest import write_manifest
from synthscan.scan import Scan


@pytest.fixture
def manifests(tmp_path):
    rng = np.random.default_rng(1)
    paths = {}
    for kind, rows, cols in (("real", 64, 16), ("synthetic", 32, 8)):
        records = []
        for i in range(12):
            metastasis, grade = [(0, 0), (1, 0), (0, 2)][i % 3]
            study_id = f"{kind}-{i}"
            write_scan(tmp_path / kind / f"{study_id}.dcm",
                       Scan(rng.poisson(8, (2, rows, cols)).astype(np.float32), (2.4, 2.4)))
            records.append({"study_id": study_id, "patient_id": study_id, "path": f"{study_id}.dcm",
                            "views": "anterior+posterior", "rows": rows, "cols": cols, "metastasis": metastasis,
                            "amyloid_grade": grade, "synthetic": int(kind == "synthetic")})
        paths[kind] = write_manifest(pd.DataFrame(records), tmp_path / kind / "manifest.csv")
    return paths


def test_make_simulate_score(manifests, tmp_path, capsys):
    study, responses, results = tmp_path / "study", tmp_path / "responses", tmp_path / "results"
    assert main(["reader-study", "make", "--real", str(manifests["real"]), "--synthetic",
                 str(manifests["synthetic"]), "--cases", "12", "--readers", "3", "--seed", "4",
                 "--out", str(study)]) == 0
    assert "3 packet(s) with 12 cases (6 synthetic) at 32x8 per view" in capsys.readouterr().out
    assert main(["reader-study", "simulate", "--key", str(study / "key.json"), "--accuracy", "0.48",
                 "--kappa", "0.18", "--out", str(responses)]) == 0
    assert len(list(responses.glob("simulated-*.csv"))) == 3
    assert main(["reader-study", "score", "--key", str(study / "key.json"), "--responses", str(responses),
                 "--n-boot", "200", "--out", str(results)]) == 0
    out = capsys.readouterr().out
    assert "pooled accuracy" in out and "Fleiss' kappa" in out
    report = (results / "report.md").read_text()
    assert "SIMULATED" in report and "0.48 [0.46-0.51]" in report and "239/400" in report
    for name in ("accuracy.png", "agreement.png", "diagnosis.png", "quality.png", "reads.csv"):
        assert (results / name).stat().st_size > 0
    document = json.loads((results / "results.json").read_text())
    assert document["n_readers"] == 3 and document["n_cases"] == 12 and document["simulated"] is True

    # Bad input: exit 2, the file and row named, the previous results untouched.
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    bad = responses / "simulated-broken.csv"
    frame = pd.read_csv(next(responses.glob("simulated-*-r1.csv")), dtype=str, keep_default_na=False)
    frame.loc[4, "quality"] = "9"
    frame.to_csv(bad, index=False)
    assert main(["reader-study", "score", "--key", str(study / "key.json"), "--responses", str(bad),
                 "--n-boot", "200", "--out", str(results)]) == 2
    assert f"{bad}: row 6: quality '9'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before
    # Results never replace a folder that is not a results folder (here: the study itself).
    assert main(["reader-study", "score", "--key", str(study / "key.json"), "--responses",
                 *map(str, sorted(responses.glob("simulated-rs-*.csv"))), "--n-boot", "200",
                 "--out", str(study)]) == 2
    assert "not a reader-study results folder" in capsys.readouterr().err
    assert (study / "key.json").is_file()
    # make never writes into a non-empty folder; simulate never overwrites response files.
    assert main(["reader-study", "make", "--real", str(manifests["real"]), "--synthetic",
                 str(manifests["synthetic"]), "--cases", "12", "--out", str(study)]) == 2
    assert main(["reader-study", "simulate", "--key", str(study / "key.json"), "--out", str(responses)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_plan_and_usage_errors(tmp_path, capsys, monkeypatch):
    assert main(["reader-study", "simulate", "--plan", "--cases", "50,100", "--readers", "2,4",
                 "--accuracy", "0.6", "--correlation", "0.3", "--n-sim", "50", "--out", str(tmp_path)]) == 0
    plan = pd.read_csv(tmp_path / "plan.csv")
    assert len(plan) == 4 and {"accuracy_ci_width", "kappa_ci_width"} <= set(plan.columns)
    assert main(["reader-study", "simulate", "--out", str(tmp_path)]) == 2
    monkeypatch.delenv("SYNTHSCAN_READER_KEY_PASSPHRASE", raising=False)
    assert main(["reader-study", "make", "--real", "a.csv", "--synthetic", "b.csv", "--protect",
                 "--out", str(tmp_path / "x")]) == 2
    assert "SYNTHSCAN_READER_KEY_PASSPHRASE" in capsys.readouterr().err
    assert main(["reader-study", "make", "--real", str(tmp_path / "none.csv"), "--synthetic", "b.csv",
                 "--out", str(tmp_path / "x")]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_reader_study_does_not_import_torch():
    code = ("import reader_study.packet, reader_study.scoring, reader_study.simulate, reader_study.report, "
            "reader_study.responses, reader_study.key, synthscan.commands.reader_study, sys; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
