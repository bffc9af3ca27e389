"""Reader-study packets: choose cases, blind them, write one self-contained HTML file per reader and a key.

Cases are chosen stratified by condition: real cases in the real pool's condition mix (or equal numbers per
condition), synthetic cases in the same mix as the chosen real ones, 50% synthetic by default. Every case is
rendered the same way (``reader_study.display``), gets a random opaque id (drawn independently of everything
about it) and appears in a random order per reader (or one shared random order). A packet holds only those
ids and pixels, every case exactly the same number of bytes; the truth goes to ``key.json`` alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reader_study.display import display_pixels, png_bytes
from reader_study.key import KEY_FORMAT, protect, write_key
from reader_study.responses import DIAGNOSES, answer_options
from synthscan import __version__
from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_dir
from synthscan.render import DEFAULT_PERCENTILE
from synthscan.scan import Scan

VIEWER_TEMPLATE = Path(__file__).parent / "viewer" / "viewer.html"
PACKET_FORMAT = "synthscan-reader-packet/1"
PLACEHOLDER = "__PACKET_JSON__"
ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"   # no 0/o, 1/l/i: ids are read aloud and typed
ID_LENGTH = 10
# Display orientation: which side of the patient is on the viewer's left and right.
SIDES = {"anterior": ["R", "L"], "posterior": ["L", "R"]}


@dataclass(frozen=True)
class StudyCase:
    """One candidate case before blinding: its origin and its truth."""

    study_id: str
    synthetic: bool
    condition: str                      # normal, metastasis or amyloidosis
    amyloid_grade: int | None = None    # Perugini 1-3 for amyloidosis, 0 or None otherwise
    origin: str = "real"                # manifest 'source': 'real' or the model hash
    path: str = ""                      # DICOM file
    matrix: tuple[int, int] | None = None   # (rows, cols) when the manifest says


@dataclass(frozen=True)
class StudySettings:
    """How to make a study (the CLI's flags)."""

    n_cases: int = 400
    n_readers: int = 4
    synthetic_fraction: float = 0.5
    equal_conditions: bool = False
    shared_order: bool = False
    views: tuple[str, ...] = ("anterior", "posterior")
    grid: tuple[int, int] | None = None        # (rows, cols) per view; None = the smallest matrix among cases
    percentile: float = DEFAULT_PERCENTILE
    counts_per_view: float | None = None       # thin busier scans down to this many counts per view
    title: str = "Bone scintigraphy reader study"

    def __post_init__(self):
        if self.n_cases < 2:
            raise BadInputError(f"--cases must be >= 2, got {self.n_cases}")
        if self.n_readers < 1:
            raise BadInputError(f"--readers must be >= 1, got {self.n_readers}")
        if not 0 < self.synthetic_fraction < 1:
            raise BadInputError(f"--synthetic-fraction must be between 0 and 1, got {self.synthetic_fraction}")
        if self.grid is not None and (self.grid[0] < 8 or self.grid[1] < 4):
            raise BadInputError(f"--matrix too small: {self.grid}")
        if self.counts_per_view is not None and self.counts_per_view < 1000:
            raise BadInputError(f"--counts-per-view must be >= 1000, got {self.counts_per_view}")


@dataclass(frozen=True)
class MadeStudy:
    out: Path
    key: Path
    packets: tuple[Path, ...]
    n_cases: int
    n_synthetic: int
    grid: tuple[int, int]
    audit: dict

    def summary(self) -> str:
        size_mb = self.packets[0].stat().st_size / 1e6 if self.packets else 0.0
        return (f"{len(self.packets)} packet(s) with {self.n_cases} cases ({self.n_synthetic} synthetic) at "
                f"{self.grid[0]}x{self.grid[1]} per view, {size_mb:.1f} MB each, in {self.out}; answer key {self.key} "
                "(keep it away from readers)\n" + audit_summary(self.audit))


# ---------------------------------------------------------------- candidates and selection


def condition_of(metastasis, amyloid_grade, condition=None) -> tuple[str | None, int | None, str]:
    """The reader-study condition of a labelled scan: (condition or None, grade, reason when None)."""
    grade = None if amyloid_grade is None or _missing(amyloid_grade) else int(amyloid_grade)
    if condition is not None and not _missing(condition):
        if condition not in DIAGNOSES:
            return None, grade, f"unknown condition {condition!r}"
        return condition, grade if condition == "amyloidosis" else None, ""
    if _missing(metastasis) or grade is None:
        return None, grade, "labels unknown"
    if int(metastasis) == 1 and grade > 0:
        return None, grade, "metastasis and amyloidosis"
    if int(metastasis) == 1:
        return "metastasis", None, ""
    return ("amyloidosis", grade, "") if grade > 0 else ("normal", None, "")


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value) or str(value) in ("", "<NA>", "nan")
    except TypeError:   # pandas NA
        return True


def cases_from_manifest(path, synthetic: bool) -> tuple[list[StudyCase], dict[str, int]]:
    """Candidate cases of a manifest, and how many rows were left out for which reason."""
    from synthscan.io.manifest import read_manifest, scan_path

    frame = read_manifest(path)
    cases, excluded = [], {}
    for position, (index, row) in enumerate(frame.iterrows()):
        flag = row.get("synthetic")
        is_synthetic = flag is not None and not _missing(flag) and int(flag) == 1
        if is_synthetic != synthetic:
            raise BadInputError(f"row {position + 2} ({row['study_id']}): synthetic="
                                f"{'blank' if flag is None or _missing(flag) else int(flag)} in the "
                                f"{'--synthetic' if synthetic else '--real'} manifest", path)
        condition, grade, reason = condition_of(row.get("metastasis"), row.get("amyloid_grade"),
                                                row.get("condition"))
        if condition is None:
            excluded[reason] = excluded.get(reason, 0) + 1
            continue
        rows, cols = row.get("rows"), row.get("cols")
        matrix = None if _missing(rows) or _missing(cols) else (int(rows), int(cols))
        origin = row.get("source")
        origin = ("synthetic" if synthetic else "real") if _missing(origin) else str(origin)
        cases.append(StudyCase(str(row["study_id"]), synthetic, condition, grade, origin,
                               str(scan_path(frame, index)), matrix))
    return cases, excluded


def allocate(total: int, weights) -> np.ndarray:
    """Split ``total`` in proportion to ``weights`` by largest remainders (Hamilton's method)."""
    weights = np.asarray(weights, float)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def select_cases(real: Sequence[StudyCase], synthetic: Sequence[StudyCase], settings: StudySettings,
                 rng: np.random.Generator) -> list[StudyCase]:
    """Stratified choice: synthetic cases in the same condition mix as the real ones."""
    n_synthetic = int(round(settings.n_cases * settings.synthetic_fraction))
    n_real = settings.n_cases - n_synthetic
    if n_real < 1 or n_synthetic < 1:
        raise BadInputError(f"{settings.n_cases} cases at synthetic fraction {settings.synthetic_fraction} "
                            "leave no real or no synthetic case")
    pool_real = {c: [case for case in real if case.condition == c] for c in DIAGNOSES}
    pool_synthetic = {c: [case for case in synthetic if case.condition == c] for c in DIAGNOSES}
    present = [c for c in DIAGNOSES if pool_real[c]]
    if not present:
        raise BadInputError("no real case with a known condition (normal, metastasis, amyloidosis)")
    weights = [1 if settings.equal_conditions else len(pool_real[c]) for c in present]
    quota_real = allocate(n_real, weights)
    quota_synthetic = allocate(n_synthetic, np.maximum(quota_real, 1e-9))
    chosen = []
    for condition, k_real, k_synthetic in zip(present, quota_real, quota_synthetic):
        for kind, pool, k in (("real", pool_real[condition], k_real), ("synthetic", pool_synthetic[condition],
                                                                     k_synthetic)):
            if k > len(pool):
                raise BadInputError(f"need {k} {kind} {condition} cases but the {kind} manifest has {len(pool)} "
                                    "usable ones: fewer --cases, or more scans of that condition")
            chosen += [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
    return chosen


# ---------------------------------------------------------------- blinding


def opaque_ids(n: int, rng: np.random.Generator, length: int = ID_LENGTH) -> list[str]:
    """``n`` distinct random ids; they depend on nothing but ``rng``."""
    ids: list[str] = []
    while len(ids) < n:
        draw = rng.integers(0, len(ID_ALPHABET), size=length)
        candidate = "".join(ID_ALPHABET[i] for i in draw)
        if candidate not in ids:
            ids.append(candidate)
    return ids


def auc(scores, positive) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney AUC)."""
    from scipy.stats import rankdata

    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if not n_pos or not n_neg:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def leakage_audit(pixels: Sequence[np.ndarray], synthetic, case_ids: Sequence[str], payload_lengths,
                  orders: Sequence[Sequence[int]]) -> dict:
    """How well could anything but the pixels tell synthetic from real? AUCs, 0.5 = not at all.

    ``png_bytes_auc`` measures what per-case PNG files of the very same pixels would leak (noise compresses
    badly, so PNG size tracks noise level); packets store raw pixels, whose size is constant.
    """
    synthetic = np.asarray(synthetic, bool)
    png = np.array([len(png_bytes(p)) for p in pixels])
    id_rank = np.argsort(np.argsort(np.asarray(case_ids)))
    positions = [auc(np.argsort(order), synthetic) for order in orders]
    return {
        "payload_bytes_auc": auc(payload_lengths, synthetic),
        "payload_bytes_distinct": int(len(set(payload_lengths))),
        "png_bytes_auc": auc(png, synthetic),
        "png_bytes_median_real": float(np.median(png[~synthetic])),
        "png_bytes_median_synthetic": float(np.median(png[synthetic])),
        "case_id_auc": auc(id_rank, synthetic),
        "position_auc_max_deviation": float(max(abs(p - 0.5) for p in positions)),
    }


def audit_summary(audit: dict) -> str:
    return (f"leakage audit (AUC real vs synthetic, 0.5 = none): packet bytes per case "
            f"{audit['payload_bytes_auc']:.2f} ({audit['payload_bytes_distinct']} distinct size), case ids "
            f"{audit['case_id_auc']:.2f}, reading position within 0.5 +- {audit['position_auc_max_deviation']:.2f}; "
            f"per-case PNG files would have given {audit['png_bytes_auc']:.2f} (median "
            f"{audit['png_bytes_median_real']:.0f} B real vs {audit['png_bytes_median_synthetic']:.0f} B synthetic)")


# ---------------------------------------------------------------- packets


def packet_html(packet: dict) -> str:
    """The viewer template with one packet's JSON inside: one self-contained file."""
    template = VIEWER_TEMPLATE.read_text(encoding="utf-8")
    if template.count(PLACEHOLDER) != 1:
        raise RuntimeError(f"viewer.html must contain {PLACEHOLDER} exactly once")
    # '<' escaped inside JSON strings so that no text can close the <script> element.
    payload = json.dumps(packet, separators=(",", ":"), ensure_ascii=True).replace("<", "\\u003c")
    return template.replace(PLACEHOLDER, payload)


def _grid(cases: Sequence[StudyCase], load: Callable[[StudyCase], Scan], settings: StudySettings):
    if settings.grid is not None:
        return settings.grid
    matrices = [c.matrix for c in cases]
    if any(m is None for m in matrices):
        matrices = [load(c).shape for c in cases]
    return min(m[0] for m in matrices), min(m[1] for m in matrices)


def make_study(cases: Sequence[StudyCase], load: Callable[[StudyCase], Scan], out, settings: StudySettings,
               seed: int | None = None, passphrase: str | None = None, inputs: dict | None = None,
               progress: Callable = lambda iterable, **_: iterable) -> MadeStudy:
    """Render, blind and write the packets and the key into the new folder ``out``.

    ``seed`` None draws a fresh one (recorded in the key): a reader who knew the seed could rebuild the key.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError("refusing to write into an existing, non-empty folder", out)
    seed = secrets.randbits(63) if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    grid = _grid(cases, load, settings)
    pixels = []
    for index, case in enumerate(progress(cases, desc="rendering cases", unit="case")):
        scan = load(case)
        if tuple(scan.views) != tuple(settings.views):
            raise BadInputError(f"has views {'+'.join(scan.views)}, the study shows {'+'.join(settings.views)}",
                                case.path or case.study_id)
        thin_rng = np.random.default_rng([seed, index]) if settings.counts_per_view else None
        pixels.append(display_pixels(scan, grid, settings.percentile, settings.counts_per_view, thin_rng))
    study_id = "rs-" + "".join(opaque_ids(1, rng, 8))
    case_ids = opaque_ids(len(cases), rng)
    encoded = [base64.b64encode(p.tobytes()).decode("ascii") for p in pixels]
    shared = rng.permutation(len(cases))
    orders = [shared if settings.shared_order else rng.permutation(len(cases)) for _ in range(settings.n_readers)]

    audit = leakage_audit(pixels, [c.synthetic for c in cases], case_ids, [len(e) for e in encoded], orders)
    if out.exists():
        out.rmdir()   # empty, checked above
    names, entries = [], []
    with atomic_dir(out) as folder:   # packets are large: write each one as soon as it is made
        for k, order in enumerate(orders, start=1):
            packet = {"format": PACKET_FORMAT, "study_id": study_id, "packet_id": f"{study_id}-r{k}",
                      "reader": f"reader-{k}", "title": settings.title, "views": list(settings.views),
                      "sides": {v: SIDES[v] for v in settings.views}, "rows": grid[0], "cols": grid[1],
                      "answers": answer_options(),
                      "cases": [{"id": case_ids[i], "pixels": encoded[i]} for i in order]}
            html = packet_html(packet).encode("utf-8")
            names.append(f"packet-reader-{k}.html")
            (folder / names[-1]).write_bytes(html)
            entries.append({"packet_id": packet["packet_id"], "reader": packet["reader"], "file": names[-1],
                            "sha256": hashlib.sha256(html).hexdigest(), "case_ids": [case_ids[i] for i in order]})
        document = {
            "format": KEY_FORMAT, "study_id": study_id, "synthscan_version": __version__,
            "settings": {"n_cases": len(cases), "n_readers": settings.n_readers,
                         "synthetic_fraction": settings.synthetic_fraction,
                         "equal_conditions": settings.equal_conditions, "shared_order": settings.shared_order,
                         "views": list(settings.views), "grid": list(grid), "percentile": settings.percentile,
                         "counts_per_view": settings.counts_per_view, "title": settings.title},
            "selection": {"seed": seed, **(inputs or {})},
            "packets": entries,
            "cases": [{"case_id": case_ids[i], "synthetic": int(c.synthetic), "condition": c.condition,
                       "amyloid_grade": c.amyloid_grade, "study_id": c.study_id, "origin": c.origin}
                      for i, c in enumerate(cases)],
            "audit": audit,
        }
        write_key(protect(document, passphrase) if passphrase else document, folder / "key.json")
    return MadeStudy(out, out / "key.json", tuple(out / name for name in names), len(cases),
                     int(sum(c.synthetic for c in cases)), tuple(grid), audit)


def make_study_from_manifests(real, synthetic, out, settings: StudySettings, seed: int | None = None,
                              passphrase: str | None = None, progress: Callable = lambda it, **_: it) -> MadeStudy:
    """``make_study`` on the scans of a real and a synthetic manifest (DICOM files read with ``read_scan``)."""
    from synthscan.io.dicom import read_scan

    real_cases, real_excluded = cases_from_manifest(real, synthetic=False)
    synthetic_cases, synthetic_excluded = cases_from_manifest(synthetic, synthetic=True)
    seed = secrets.randbits(63) if seed is None else int(seed)
    chosen = select_cases(real_cases, synthetic_cases, settings, np.random.default_rng([seed, 1]))
    inputs = {"real_manifest": str(real), "synthetic_manifest": str(synthetic),
              "excluded_real": real_excluded, "excluded_synthetic": synthetic_excluded}
    return make_study(chosen, lambda case: read_scan(case.path, views=settings.views), out, settings, seed,
                      passphrase, inputs, progress)
