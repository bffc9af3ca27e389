"""Response files against a key: a clean round trip, and every kind of bad input named by file and row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reader_study.key import read_key
from reader_study.packet import StudyCase, StudySettings, make_study
from reader_study.responses import COLUMNS, read_responses
from reader_study.scoring import ReadMatrix, score
from reader_study.simulate import ReaderModel, write_simulated_responses
from synthscan.errors import BadInputError
from synthscan.scan import Scan


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    conditions = ["normal", "metastasis", "amyloidosis"]
    cases = [StudyCase(f"study-{i}", i % 2 == 1, conditions[i % 3], 2 if i % 3 == 2 else None) for i in range(12)]
    scans = {c.study_id: Scan(rng.poisson(20, (2, 16, 4)).astype(np.float32), (2.4, 2.4)) for c in cases}
    made = make_study(cases, lambda c: scans[c.study_id], tmp_path / "study", StudySettings(n_cases=12, n_readers=3),
                      seed=0)
    key = read_key(made.key)
    paths = write_simulated_responses(key, ReaderModel(0.6, 0.2), None, 1, tmp_path / "responses")
    return key, paths


def test_simulated_responses_round_trip_through_scoring(study):
    key, paths = study
    assert [p.name for p in paths] == [f"simulated-{p}.csv" for p in key.packets]
    frame = pd.read_csv(paths[0], dtype=str, keep_default_na=False)
    assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS
    reads = read_responses(paths, key)
    assert len(reads) == 3 * 12 and reads["simulated"].all()
    matrix = ReadMatrix.from_frame(reads)
    assert matrix.readers == ("reader-1", "reader-2", "reader-3")
    assert (matrix.truth_synthetic == key.truth.loc[list(matrix.case_ids), "synthetic"].to_numpy(bool)).all()
    assert score(matrix, n_boot=200).n_cases == 12


def _edit(path, change):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = change(frame)
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign(packet_id="rs-zzzzzzzz-r9"), r"row 2: unknown packet 'rs-zzzzzzzz-r9'"),
    (lambda f: f.assign(study_id="rs-other"), r"row 2: study 'rs-other' is not the study of key"),
    (lambda f: pd.concat([f, f.iloc[[3]]]), r"row 14: duplicate case id '\w+' \(also row 5\)"),
    (lambda f: f.iloc[:-2], r"2 of packet \S+ 12 cases are missing"),
    (lambda f: f.assign(judged_source=["maybe"] + list(f.judged_source[1:])),
     r"row 2: judged_source 'maybe' is not one of real, synthetic"),
    (lambda f: f.assign(quality=list(f.quality[:4]) + ["7"] + list(f.quality[5:])),
     r"row 6: quality '7' is not one of 1, 2, 3, 4, 5"),
    (lambda f: f.assign(confidence=[""] * len(f)), r"row 2: case \w+ is unanswered: confidence is blank"),
    (lambda f: f.assign(diagnosis="normal", amyloid_grade="2"), r"row 2: amyloid_grade '2' given with diagnosis"),
    (lambda f: f.assign(diagnosis="amyloidosis", amyloid_grade=""), r"row 2: amyloidosis needs amyloid_grade"),
    (lambda f: f.assign(case_id=["nosuchcase"] + list(f.case_id[1:])), r"row 2: case id 'nosuchcase' is not in"),
    (lambda f: f.drop(columns=["diagnosis"]), r"missing column\(s\) \['diagnosis'\]"),
    (lambda f: f.assign(reader="reader-2"), r"row 2: reader 'reader-2' but packet"),
])
def test_bad_response_files_are_named_by_file_and_row(study, change, message):
    key, paths = study
    bad = _edit(paths[0], change)
    with pytest.raises(BadInputError, match=message) as error:
        read_responses(paths, key)
    assert str(error.value).startswith(str(bad))


def test_the_same_packet_twice_is_an_error(study, tmp_path):
    key, paths = study
    copy = tmp_path / "copy.csv"
    copy.write_text(paths[0].read_text())
    with pytest.raises(BadInputError, match=f"already read from {paths[0]}"):
        read_responses([paths[0], copy], key)


def test_a_key_that_does_not_match_the_packets(study, tmp_path):
    key, paths = study
    rng = np.random.default_rng(9)
    cases = [StudyCase(f"other-{i}", i % 2 == 1, "normal") for i in range(4)]
    scans = {c.study_id: Scan(rng.poisson(5, (2, 16, 4)).astype(np.float32), (2.4, 2.4)) for c in cases}
    other = make_study(cases, lambda c: scans[c.study_id], tmp_path / "other", StudySettings(n_cases=4), seed=9)
    with pytest.raises(BadInputError, match="responses and key do not belong together"):
        read_responses(paths, read_key(other.key))


def test_malformed_keys(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(BadInputError, match="a.json: not a JSON key file"):
        read_key(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"format": "something else"}')
    with pytest.raises(BadInputError, match="not a reader-study key"):
        read_key(tmp_path / "b.json")
    with pytest.raises(BadInputError, match="key file not found"):
        read_key(tmp_path / "missing.json")
