"""The mixer: inject synthetic scans into a real training manifest, with provenance (DESIGN.md sections 1, 5).

Classes are the generation conditions: ``normal``, ``metastasis``, ``amyloidosis`` (grade >= 2, the binary
amyloidosis label). A real scan's class comes from its labels: metastasis 1 -> metastasis (it takes precedence),
else grade >= 2 -> amyloidosis, else normal (grade 1 is negative for the binary label); a scan without labels has
no class. A synthetic scan's class is its ``condition`` column. Strategies, for the classes to receive scans
(default: every class of the real set):

- ratio R: R synthetic scans per real scan of each class (class proportions kept), rounded per class;
- per-class balance: top every class up to the largest real class;
- ratio R with per-class balance: round(R x n_real) synthetic scans, given one at a time to the smallest
  class, so that the classes end as equal as the budget allows;
- fixed counts per condition (``amyloidosis-g3`` picks one grade).

Synthetic scans are drawn without replacement, per class from ``numpy.random.default_rng((seed, class))``:
the same seed gives the same rows, and asking for more scans of one class keeps the earlier ones and changes
no other class. Synthetic scans are for training only: :func:`assert_no_synthetic` is the guard every
validation and test manifest passes through.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from synthscan.errors import BadInputError

CLASSES = ("normal", "metastasis", "amyloidosis")
GRADED = tuple(f"amyloidosis-g{grade}" for grade in (1, 2, 3))
COUNT_KEYS = CLASSES + GRADED


# ------------------------------------------------------------------------------------------- provenance
def is_synthetic(frame: pd.DataFrame) -> pd.Series:
    """Rows that are synthetic by any sign: ``synthetic`` = 1, a ``source`` other than real, or a ``syn-`` id."""
    flags = pd.Series(False, index=frame.index)
    if "synthetic" in frame.columns:
        flags |= pd.to_numeric(frame["synthetic"], errors="coerce").fillna(0).astype(float).ne(0)
    if "source" in frame.columns:
        source = frame["source"].astype("string").str.strip()
        flags |= source.notna() & source.ne("") & source.str.lower().ne("real")
    if "study_id" in frame.columns:
        flags |= frame["study_id"].astype(str).str.startswith("syn-")
    return flags


def assert_no_synthetic(frame: pd.DataFrame, role: str, path=None) -> None:
    """Refuse a validation or test manifest that contains synthetic scans (they may only train)."""
    synthetic = is_synthetic(frame)
    if synthetic.any():
        example = frame.loc[synthetic, "study_id"].iloc[0] if "study_id" in frame.columns else synthetic.idxmax()
        raise BadInputError(f"the {role} set contains {int(synthetic.sum())} synthetic scan(s) (e.g. {example!r}); "
                            "synthetic scans may only be used for training", path)


def rebase_paths(frame: pd.DataFrame, new_root) -> pd.DataFrame:
    """A copy whose ``path`` column resolves from ``new_root`` (paths were relative to ``frame.attrs['root']``)."""
    frame = frame.copy()
    root, new_root = Path(frame.attrs.get("root", ".")).resolve(), Path(new_root).resolve()
    frame["path"] = [os.path.relpath(root / str(p), new_root) if pd.notna(p) else p for p in frame["path"]]
    frame.attrs["root"] = str(new_root)
    return frame


# ----------------------------------------------------------------------------------------------- classes
def real_classes(frame: pd.DataFrame) -> pd.Series:
    """The class of each real scan from its labels (blank when it has none)."""
    metastasis, grade = _number(frame, "metastasis"), _number(frame, "amyloid_grade")
    classes = pd.Series(pd.NA, index=frame.index, dtype=object)
    classes[grade.notna() | metastasis.notna()] = "normal"
    classes[grade >= 2] = "amyloidosis"
    classes[metastasis == 1] = "metastasis"
    return classes


def _number(frame: pd.DataFrame, column: str) -> pd.Series:
    """A label column as float (nan = blank or absent), so comparisons never meet pandas' NA."""
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def synthetic_keys(frame: pd.DataFrame, path=None) -> pd.DataFrame:
    """Class and graded key (``amyloidosis-g3``) of each synthetic scan, checked against its labels."""
    if "condition" not in frame.columns or frame["condition"].isna().any():
        raise BadInputError("every synthetic scan needs a 'condition' (normal, metastasis, amyloidosis)", path)
    condition = frame["condition"].astype(str)
    grade, metastasis = _number(frame, "amyloid_grade"), _number(frame, "metastasis")
    amyloid = condition.eq("amyloidosis")
    if (amyloid & grade.isna()).any():
        raise BadInputError("synthetic amyloidosis scans need their 'amyloid_grade'", path)
    wrong = (condition.eq("metastasis") & metastasis.eq(0)) | (condition.ne("metastasis") & metastasis.eq(1))
    if wrong.any():
        row = frame[wrong].iloc[0]
        raise BadInputError(f"synthetic scan {row['study_id']!r}: condition {row['condition']!r} contradicts "
                            f"metastasis={row['metastasis']}", path)
    graded = condition.where(~amyloid, "amyloidosis-g" + grade.astype("Int64").astype(str))
    # the binary amyloidosis class is grade >= 2; a grade-1 sample is only reachable by its graded key
    klass = condition.where(~amyloid | (grade >= 2), pd.NA)
    return pd.DataFrame({"klass": klass, "graded": graded}, index=frame.index)


# ----------------------------------------------------------------------------------------------- planning
def plan_counts(real_counts: dict[str, int], *, ratio: float | None = None, balance: str | None = None,
                counts: dict[str, int] | None = None, conditions=None) -> dict[str, int]:
    """How many synthetic scans of each class (or graded key) to add; see the module docstring."""
    if counts is not None:
        if ratio is not None or balance is not None:
            raise BadInputError("give either fixed counts or a ratio/balance, not both")
        unknown = sorted(set(counts) - set(COUNT_KEYS))
        if unknown:
            raise BadInputError(f"unknown condition(s) {unknown} in counts (use {', '.join(COUNT_KEYS)})")
        if any(int(v) < 0 for v in counts.values()):
            raise BadInputError(f"counts must be >= 0, got {counts}")
        return {key: int(counts[key]) for key in COUNT_KEYS if counts.get(key)}
    if balance not in (None, "per-class"):
        raise BadInputError(f"unknown balance {balance!r} (per-class)")
    if ratio is None and balance is None:
        raise BadInputError("say how much to mix: a ratio, per-class balance, or fixed counts")
    if ratio is not None and (not np.isfinite(ratio) or ratio < 0):
        raise BadInputError(f"ratio must be a number >= 0, got {ratio}")
    present = [c for c in CLASSES if real_counts.get(c, 0) > 0]
    if not present:
        raise BadInputError("the real manifest has no labelled scans (metastasis/amyloid_grade) to mix by class")
    chosen = present if conditions is None else list(conditions)
    unknown = sorted(set(chosen) - set(CLASSES))
    if unknown:
        raise BadInputError(f"unknown condition(s) {unknown} (use {', '.join(CLASSES)})")
    chosen = [c for c in CLASSES if c in chosen]
    if balance is None:
        return {c: int(round(ratio * real_counts.get(c, 0))) for c in chosen}
    sizes = {c: real_counts.get(c, 0) for c in chosen}
    if ratio is None:
        target = max(real_counts.get(c, 0) for c in present)
        return {c: target - sizes[c] for c in chosen if target > sizes[c]}
    added = dict.fromkeys(chosen, 0)
    for _ in range(int(round(ratio * sum(real_counts.values())))):
        smallest = min(chosen, key=lambda c: (sizes[c] + added[c], chosen.index(c)))
        added[smallest] += 1
    return {c: n for c, n in added.items() if n}


# -------------------------------------------------------------------------------------------------- mix
def mix(real: pd.DataFrame, synthetic: pd.DataFrame, *, ratio: float | None = None, balance: str | None = None,
        counts: dict[str, int] | None = None, conditions=None, seed: int = 0, out_root=None) -> pd.DataFrame:
    """A training manifest: every real row plus synthetic rows drawn as planned, with provenance.

    Real rows get ``synthetic`` 0 and ``source`` "real" where blank; synthetic rows keep ``source`` (the model
    hash) and ``seed`` (their sample seed) and get ``synthetic`` 1. With ``out_root`` set, paths are rewritten
    to resolve from there (from ``attrs['root']`` of each input, as ``read_manifest`` sets it).
    """
    synthetic_path = synthetic.attrs.get("path")
    marked_real = pd.to_numeric(synthetic.get("synthetic", pd.Series(dtype=float)), errors="coerce").eq(0)
    if marked_real.any():
        raise BadInputError(f"{int(marked_real.sum())} row(s) of the synthetic manifest are marked real "
                            f"(synthetic=0, e.g. {synthetic.loc[marked_real, 'study_id'].iloc[0]!r})", synthetic_path)
    overlap = sorted(set(real["study_id"].astype(str)) & set(synthetic["study_id"].astype(str)))
    if overlap:
        raise BadInputError(f"{len(overlap)} study_id(s) in both manifests (e.g. {overlap[0]!r})")
    keys = synthetic_keys(synthetic, synthetic_path)
    real_counts = real_classes(real).value_counts().to_dict()
    plan = plan_counts(real_counts, ratio=ratio, balance=balance, counts=counts, conditions=conditions)
    chosen = []
    for key, wanted in plan.items():
        column = "graded" if key in GRADED else "klass"
        pool = np.flatnonzero(keys[column].eq(key).fillna(False).to_numpy())
        if wanted > len(pool):
            have = keys["graded"].value_counts().sort_index().to_dict()
            what = "no" if len(pool) == 0 else f"only {len(pool)}"
            raise BadInputError(f"{what} synthetic {key!r} scans, {wanted} needed (the synthetic manifest has "
                                f"{have or 'none'}; sample more with synthscan sample --condition ...)",
                                synthetic_path)
        rng = np.random.default_rng((int(seed), COUNT_KEYS.index(key)))
        chosen.append(np.sort(pool[rng.permutation(len(pool))[:wanted]]))
    picked = synthetic.iloc[np.concatenate(chosen) if chosen else []].copy()
    real = real.copy()
    if "synthetic" not in real.columns:
        real["synthetic"] = pd.NA
    real["synthetic"] = pd.to_numeric(real["synthetic"], errors="coerce").fillna(0).astype("Int64")
    source = real["source"] if "source" in real.columns else pd.Series(pd.NA, index=real.index)
    real["source"] = source.where(source.notna() & source.astype(str).str.strip().ne(""), "real")
    picked["synthetic"] = 1
    if out_root is not None:
        real, picked = rebase_paths(real, out_root), rebase_paths(picked, out_root)
    columns = list(real.columns) + [c for c in picked.columns if c not in real.columns]
    mixed = pd.concat([real, picked], ignore_index=True)[columns]
    mixed.attrs = {"root": str(Path(out_root).resolve())} if out_root is not None else {}
    return mixed


def mix_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Scans per class, real and synthetic (rows: classes, then 'unlabelled' and 'total')."""
    synthetic = is_synthetic(frame)
    klass = real_classes(frame)
    if "condition" in frame.columns:
        klass = klass.where(~synthetic | frame["condition"].isna(), frame["condition"])
    klass = klass.fillna("unlabelled")
    table = pd.crosstab(klass, synthetic.map({False: "real", True: "synthetic"}))
    for column in ("real", "synthetic"):
        if column not in table.columns:
            table[column] = 0
    order = [c for c in CLASSES + ("unlabelled",) if c in table.index]
    table = table.loc[order, ["real", "synthetic"]]
    table.loc["total"] = table.sum()
    table.columns.name, table.index.name = None, "class"
    return table
