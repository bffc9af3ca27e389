"""The answer key of a reader study: which case is real or synthetic, its condition, which packet holds it.

The key is the only place the truth lives; packets never contain it. ``key.json`` is plain JSON, or, when
made with a passphrase, *protected*: each truth field is stored as a keyed hash
``HMAC-SHA256(k, study | case | field | value)`` with ``k = PBKDF2-HMAC-SHA256(passphrase, salt)``
(RFC 2104, RFC 8018), so the file says nothing to whoever lacks the passphrase. Scoring recovers each value
by trying the few allowed ones. Provenance (study ids) is then stored as a keyed hash too, and the seed
is left out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from synthscan.errors import BadInputError
from synthscan.io.atomic import write_text

KEY_FORMAT = "synthscan-reader-key/1"
PASSPHRASE_ENV = "SYNTHSCAN_READER_KEY_PASSPHRASE"
PBKDF2_ITERATIONS = 200_000
TRUTH_VALUES = {
    "synthetic": ("0", "1"),
    "condition": ("normal", "metastasis", "amyloidosis"),
    "amyloid_grade": ("", "0", "1", "2", "3"),
}


@dataclass(frozen=True)
class PacketEntry:
    packet_id: str
    reader: str
    file: str
    case_ids: tuple[str, ...]


@dataclass(frozen=True)
class StudyKey:
    """A loaded key: packets by id and the truth table indexed by case id."""

    study_id: str
    packets: dict[str, PacketEntry]
    truth: pd.DataFrame        # index case_id; synthetic (0/1), condition, amyloid_grade (Int64)
    path: str
    protected: bool
    document: dict

    @property
    def case_ids(self) -> tuple[str, ...]:
        return tuple(self.truth.index)


def passphrase_from_env() -> str | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value if value else None


def _derive(passphrase: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode(), salt, iterations, dklen=32)


def _tag(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()


def protect(document: dict, passphrase: str, salt: bytes | None = None) -> dict:
    """A copy of a plain key document with truth and provenance replaced by keyed hashes."""
    if not passphrase:
        raise BadInputError("an empty passphrase cannot protect a key")
    salt = secrets.token_bytes(16) if salt is None else salt
    secret = _derive(passphrase, salt, PBKDF2_ITERATIONS)
    study = document["study_id"]
    cases = []
    for case in document["cases"]:
        protected = {"case_id": case["case_id"]}
        for field in TRUTH_VALUES:
            protected[field] = _tag(secret, study, case["case_id"], field, _text(case.get(field)))
        protected["origin"] = _tag(secret, study, case["case_id"], "origin", str(case.get("study_id", "")))
        cases.append(protected)
    out = {k: v for k, v in document.items() if k != "cases"}
    # The seed would let anyone with the manifests rebuild the plain key.
    out["selection"] = {k: v for k, v in document.get("selection", {}).items() if k != "seed"}
    out["cases"] = cases
    out["protection"] = {"scheme": "pbkdf2-hmac-sha256", "salt": salt.hex(), "iterations": PBKDF2_ITERATIONS,
                         "verifier": _tag(secret, study, "verifier")}
    return out


def _text(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(int(value)) if isinstance(value, (bool, int)) else str(value)


def _unprotect(document: dict, passphrase: str | None, path) -> list[dict]:
    protection = document["protection"]
    if not passphrase:
        raise BadInputError(f"this key is passphrase-protected: set {PASSPHRASE_ENV}", path)
    secret = _derive(passphrase, bytes.fromhex(protection["salt"]), int(protection["iterations"]))
    study = document["study_id"]
    if not hmac.compare_digest(_tag(secret, study, "verifier"), protection["verifier"]):
        raise BadInputError(f"wrong passphrase for this key ({PASSPHRASE_ENV})", path)
    cases = []
    for row, case in enumerate(document["cases"], start=1):
        plain = {"case_id": case["case_id"]}
        for field, values in TRUTH_VALUES.items():
            found = [v for v in values if hmac.compare_digest(_tag(secret, study, case["case_id"], field, v),
                                                               case[field])]
            if len(found) != 1:
                raise BadInputError(f"case {row} ({case['case_id']}): {field} does not decode (corrupted key?)",
                                    path)
            plain[field] = found[0]
        cases.append(plain)
    return cases


def write_key(document: dict, path) -> Path:
    path = Path(path)
    write_text(path, json.dumps(document, indent=1) + "\n")
    return path


def read_key(path, passphrase: str | None = None) -> StudyKey:
    """Load and check a key; a protected key needs its passphrase."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError("key file not found", path)
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInputError(f"not a JSON key file ({error})", path) from None
    if not isinstance(document, dict) or document.get("format") != KEY_FORMAT:
        raise BadInputError(f"not a reader-study key (expected format {KEY_FORMAT!r})", path)
    try:
        cases = _unprotect(document, passphrase, path) if document.get("protection") else document["cases"]
        study_id = str(document["study_id"])
        truth = pd.DataFrame({
            "case_id": [str(c["case_id"]) for c in cases],
            "synthetic": [int(_text(c["synthetic"])) for c in cases],
            "condition": [str(c["condition"]) for c in cases],
            "amyloid_grade": pd.array([int(g) if (g := _text(c.get("amyloid_grade"))) else None for c in cases],
                                      dtype="Int64"),
        })
        packets = {}
        for entry in document["packets"]:
            packet = PacketEntry(str(entry["packet_id"]), str(entry["reader"]), str(entry["file"]),
                                 tuple(str(c) for c in entry["case_ids"]))
            packets[packet.packet_id] = packet
    except (KeyError, TypeError, ValueError) as error:
        raise BadInputError(f"malformed key ({type(error).__name__}: {error})", path) from None
    if truth["case_id"].duplicated().any():
        raise BadInputError(f"duplicate case id {truth['case_id'][truth['case_id'].duplicated()].iloc[0]!r}", path)
    bad = ~truth["condition"].isin(TRUTH_VALUES["condition"]) | ~truth["synthetic"].isin((0, 1))
    if bad.any():
        raise BadInputError(f"case {truth['case_id'][bad].iloc[0]!r}: invalid truth values", path)
    cases_set = set(truth["case_id"])
    for packet in packets.values():
        if sorted(packet.case_ids) != sorted(cases_set):
            raise BadInputError(f"packet {packet.packet_id} does not list exactly the key's cases", path)
    return StudyKey(study_id, packets, truth.set_index("case_id"), str(path),
                    bool(document.get("protection")), document)
