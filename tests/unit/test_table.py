"""The shared reader of small CSV tables: clear errors that name the file, and no cell text when asked."""

import pandas as pd
import pytest

from synthscan.errors import BadInputError
from synthscan.io.table import read_csv_table


def test_missing_file_is_named(tmp_path):
    with pytest.raises(BadInputError, match="labels file not found") as caught:
        read_csv_table(tmp_path / "labels.csv", "labels file")
    assert "labels.csv" in str(caught.value)


def _bad_csv(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("study_key,metastasis\nRoe^John,0\nDoe^Jane,1,extra,fields\n")
    return path


def test_parser_error_quotes_the_line_only_when_allowed(tmp_path):
    path = _bad_csv(tmp_path)
    with pytest.raises(BadInputError, match="not a readable CSV labels file") as quoted:
        read_csv_table(path, "labels file")
    with pytest.raises(BadInputError, match=r"not a readable CSV labels file \(ParserError\)") as hidden:
        read_csv_table(path, "labels file", quote_error=False)
    assert "Expected 2 fields" in str(quoted.value)
    assert "Doe" not in str(hidden.value) and "Expected" not in str(hidden.value)


def test_blank_cells_and_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\nNA,\n007,x\n")
    frame = read_csv_table(path, "table")
    assert frame["a"].tolist() == ["NA", "007"]  # text stays text: no NA guessing, no lost leading zeros
    assert pd.isna(frame["b"].iloc[0])
    assert read_csv_table(path, "table", blank_is_missing=False)["b"].iloc[0] == ""


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(BadInputError, match="EmptyDataError"):
        read_csv_table(path, "table", quote_error=False)
