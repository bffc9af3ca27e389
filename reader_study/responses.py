"""Reader responses: the CSV a packet's viewer exports, its allowed answers, and strict reading against a key.

One file per packet, one row per case, columns ``COLUMNS``. Row numbers in error messages are CSV line
numbers (the header is line 1).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path
from synthscan.io.table import read_csv_table

SOURCES = ("real", "synthetic")
DIAGNOSES = ("normal", "metastasis", "amyloidosis")
AMYLOID_GRADES = (1, 2, 3)
LIKERT = (1, 2, 3, 4, 5)
COLUMNS = ("study_id", "packet_id", "reader", "case_id", "position", "judged_source", "diagnosis",
           "amyloid_grade", "quality", "confidence", "seconds")
OPTIONAL_COLUMNS = ("simulated",)   # 1 in files written by ``simulate``; the report says so


def answer_options() -> dict:
    """The allowed answers, embedded in every packet so the viewer and scoring share one definition."""
    return {"judged_source": list(SOURCES), "diagnosis": list(DIAGNOSES), "amyloid_grade": list(AMYLOID_GRADES),
            "quality": list(LIKERT), "confidence": list(LIKERT), "columns": list(COLUMNS)}


def _integer(text: str):
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def read_response_file(path, key) -> pd.DataFrame:
    """Read one exported response file and check it against the key; return one row per read."""
    path = Path(path)
    frame = read_csv_table(path, "response file", blank_is_missing=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise BadInputError(f"missing column(s) {missing}; expected the viewer's export {list(COLUMNS)}", path)
    if frame.empty:
        raise BadInputError("no responses in this file", path)
    frame = frame.apply(lambda column: column.str.strip())

    def fail(index, message):
        raise BadInputError(f"row {index + 2}: {message}", path)

    packet_ids = frame["packet_id"].unique()
    packet_id = frame["packet_id"].iloc[0]
    for index, row in frame.iterrows():
        if row["study_id"] != key.study_id:
            fail(index, f"study {row['study_id']!r} is not the study of key {key.path} ({key.study_id!r}): "
                        "responses and key do not belong together")
        if row["packet_id"] not in key.packets:
            fail(index, f"unknown packet {row['packet_id']!r}; key {key.path} has packets "
                        f"{', '.join(sorted(key.packets))}")
        if len(packet_ids) > 1 and row["packet_id"] != packet_id:
            fail(index, f"packet {row['packet_id']!r} differs from row 2's {packet_id!r}: one packet per file")
    packet = key.packets[packet_id]
    allowed_cases = set(packet.case_ids)
    seen: dict[str, int] = {}
    records = []
    for index, row in frame.iterrows():
        case = row["case_id"]
        if row["reader"] != packet.reader:
            fail(index, f"reader {row['reader']!r} but packet {packet_id} belongs to {packet.reader!r}")
        if case not in allowed_cases:
            fail(index, f"case id {case!r} is not in packet {packet_id}")
        if case in seen:
            fail(index, f"duplicate case id {case!r} (also row {seen[case] + 2})")
        seen[case] = index
        for field, allowed in (("judged_source", SOURCES), ("diagnosis", DIAGNOSES)):
            if row[field] == "":
                fail(index, f"case {case} is unanswered: {field} is blank")
            if row[field] not in allowed:
                fail(index, f"{field} {row[field]!r} is not one of {', '.join(allowed)}")
        values = {}
        for field in ("quality", "confidence"):
            if row[field] == "":
                fail(index, f"case {case} is unanswered: {field} is blank")
            values[field] = _integer(row[field])
            if values[field] not in LIKERT:
                fail(index, f"{field} {row[field]!r} is not one of {', '.join(map(str, LIKERT))}")
        grade = None
        if row["diagnosis"] == "amyloidosis":
            grade = _integer(row["amyloid_grade"]) if row["amyloid_grade"] else None
            if grade not in AMYLOID_GRADES:
                fail(index, f"amyloidosis needs amyloid_grade 1, 2 or 3, got {row['amyloid_grade']!r}")
        elif row["amyloid_grade"] not in ("", "0"):
            fail(index, f"amyloid_grade {row['amyloid_grade']!r} given with diagnosis {row['diagnosis']!r}")
        records.append({"reader": packet.reader, "packet_id": packet_id, "case_id": case,
                        "judged_source": row["judged_source"], "diagnosis": row["diagnosis"],
                        "amyloid_grade": grade, **values,
                        "simulated": row.get("simulated", "") in ("1", "true", "True")})
    absent = [c for c in packet.case_ids if c not in seen]
    if absent:
        shown = ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else "")
        raise BadInputError(f"{len(absent)} of packet {packet_id}'s {len(packet.case_ids)} cases are missing "
                            f"({shown})", path)
    return pd.DataFrame.from_records(records)


def response_paths(items) -> list[Path]:
    """Files as given, folders expanded to the CSV files inside them (sorted)."""
    paths = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(item.glob("*.csv"))
            if not found:
                raise BadInputError("no .csv response files in this folder", item)
            paths += found
        else:
            paths.append(item)
    return paths


def read_responses(paths, key) -> pd.DataFrame:
    """Read every response file; one tidy row per read, with the key's truth columns ``truth_*`` joined."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise BadInputError("no response files given")
    frames, origin = [], {}
    for path in paths:
        frame = read_response_file(path, key)
        packet_id = frame["packet_id"].iloc[0]
        if packet_id in origin:
            raise BadInputError(f"packet {packet_id} was already read from {origin[packet_id]}", path)
        origin[packet_id] = path
        frames.append(frame)
    reads = pd.concat(frames, ignore_index=True)
    truth = key.truth.rename(columns=lambda c: f"truth_{c}")
    return reads.join(truth, on="case_id")


def write_responses(rows: pd.DataFrame, path) -> Path:
    """Write a response file in the viewer's export format (atomically; never over an existing file)."""
    path = Path(path)
    if path.exists():
        raise BadInputError("refusing to overwrite an existing response file", path)
    columns = list(COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in rows.columns]
    with atomic_path(path) as tmp:
        rows[columns].to_csv(tmp, index=False)
    return path
