"""Generation conditions (DESIGN.md section 5) and their class ids in the denoiser's class embedding.

One class id encodes condition and amyloid grade: 0 is the null class of classifier-free guidance (also used
for training scans whose labels are unknown or outside the conditions, e.g. metastasis *and* amyloid),
1 normal, 2 metastasis, 3-5 amyloidosis Perugini grade 1-3.
"""

from __future__ import annotations

import math

from synthscan.errors import BadInputError

CONDITIONS = ("normal", "metastasis", "amyloidosis")
NULL_CLASS = 0
CLASS_NAMES = ("null", "normal", "metastasis", "amyloidosis-g1", "amyloidosis-g2", "amyloidosis-g3")
NUM_CLASSES = len(CLASS_NAMES)
AMYLOID_CLASSES = CLASS_NAMES[3:]  # "amyloidosis-g1" ... "-g3" (also keys of per-grade sampler settings)
AMYLOID_GRADES = (1, 2, 3)
DRAWN_AMYLOID_GRADES = (2, 3)  # amyloidosis without --grade (DESIGN.md section 5: amyloidosis means grade >= 2)
NEGATIVE_CONDITIONS = ("normal", "metastasis")  # one class each (amyloidosis spans three grade classes)


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("", "<NA>", "nan")


def class_from_labels(metastasis, amyloid_grade) -> int:
    """Class id of a training scan from its manifest labels (null when unknown or both abnormal)."""
    if _blank(metastasis) or _blank(amyloid_grade):
        return NULL_CLASS
    metastasis, grade = int(metastasis), int(amyloid_grade)
    if metastasis == 1:
        return 2 if grade == 0 else NULL_CLASS
    return 1 if grade == 0 else 2 + grade


def class_for(condition: str, grade: int | None = None) -> int:
    """Class id to generate ``condition`` (amyloidosis needs its grade)."""
    check_condition(condition, grade)
    if condition == "normal":
        return 1
    if condition == "metastasis":
        return 2
    if grade is None:
        raise ValueError("amyloidosis needs a grade to pick its class")
    return 2 + int(grade)


def judge_class_of(class_id: int) -> int:
    """The fidelity judge's class of a denoiser class (DESIGN.md section 5): 0 normal, 1 metastasis,
    2 amyloidosis grade >= 2; -1 for the null class and amyloid grade 1, which the judge does not score."""
    return {1: 0, 2: 1, 4: 2, 5: 2}.get(int(class_id), -1)


def check_condition(condition: str, grade: int | None) -> None:
    """Raise :class:`BadInputError` for an unknown condition or a grade that does not fit it."""
    if condition not in CONDITIONS:
        raise BadInputError(f"unknown condition {condition!r} (choose from {', '.join(CONDITIONS)})")
    if grade is not None:
        if condition != "amyloidosis":
            raise BadInputError(f"--grade applies to amyloidosis only, not to {condition!r}")
        if grade not in AMYLOID_GRADES:
            raise BadInputError(f"amyloid grade must be one of {AMYLOID_GRADES} (Perugini), got {grade}")


def is_negative_for(condition: str, negative: str) -> bool:
    """Whether samples of ``condition`` may be guided away from ``negative`` (another single-class condition)."""
    return negative in NEGATIVE_CONDITIONS and negative != condition


def check_negative(condition: str, negative: str | None) -> None:
    """Raise :class:`BadInputError` unless ``negative`` (None: none) may steer samples of ``condition`` away."""
    if negative is not None and not is_negative_for(condition, negative):
        raise BadInputError(f"negative condition must be one of {', '.join(NEGATIVE_CONDITIONS)} other than the "
                            f"condition sampled ({condition!r}), got {negative!r}")


def labels_for(class_id: int) -> dict:
    """Manifest labels of a generated scan of a class."""
    if class_id == 1:
        return {"condition": "normal", "metastasis": 0, "amyloid_grade": 0}
    if class_id == 2:
        return {"condition": "metastasis", "metastasis": 1, "amyloid_grade": 0}
    if 3 <= class_id <= 5:
        return {"condition": "amyloidosis", "metastasis": 0, "amyloid_grade": class_id - 2}
    raise ValueError(f"class {class_id} has no labels")


def folder_name(condition: str, grade: int | None) -> str:
    """Output sub-folder and study-id part: ``normal``, ``metastasis``, ``amyloidosis`` or ``amyloidosis-g3``."""
    return condition if grade is None else f"{condition}-g{grade}"
