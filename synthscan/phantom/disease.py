"""Disease, benign findings, tracer biodistribution and survival of the phantom.

Biology as summarised in /work/shared/PHANTOM.md (sources: EANM bone scintigraphy guideline, Van den Wyngaert
et al., Eur J Nucl Med Mol Imaging 2016;43:1723-38; Perugini et al., J Am Coll Cardiol 2005;46:1076-84 for the
visual grade of cardiac ATTR amyloidosis; Gillmore et al., Circulation 2016;133:2404-12 for DPD/HMDP vs MDP).

- Metastases are foci of raised bone uptake (lesion-to-bone ratio 1.5-10) placed on skeleton points, mostly in
  the axial skeleton; about 5 % are photopenic. Diffuse disease gives a superscan: intense skeleton, faint
  kidneys and bladder, low soft tissue.
- Cardiac amyloidosis is myocardial uptake graded Perugini 0-3 relative to bone; grade 3 also lowers bone
  uptake. DPD and HMDP/HDP bind ATTR deposits avidly, MDP weakly (``Tracer.amyloid``).
- Benign mimics: degenerative joints and lower lumbar spine, healing rib fractures in a vertical row, dental and
  sinus uptake, injection-site extravasation, urine contamination.
- Survival times come from a Weibull proportional-hazards model in metastatic burden, amyloid grade and age
  with a log-normal frailty; censoring is administrative (end of follow-up) plus loss to follow-up.

Each random draw returns plain frozen records; :func:`bone_multipliers` applies foci deterministically.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from synthscan.phantom.anatomy import AXIAL, FOREARM_L, FOREARM_R, ARM_L, ARM_R, PART, PARTS, skeleton_template


@dataclass(frozen=True)
class Tracer:
    """Biodistribution of a 99mTc bisphosphonate relative to MDP at 2-4 h (bone uptake = 1)."""

    name: str
    soft_tissue: float  # soft-tissue retention (DPD/HMDP slightly higher than MDP)
    kidney: float
    amyloid: float  # myocardial ATTR uptake relative to DPD


TRACERS = {
    "MDP": Tracer("MDP", 1.0, 1.0, 0.22),
    "HMDP": Tracer("HMDP", 1.12, 1.0, 0.85),
    "HDP": Tracer("HDP", 1.12, 1.0, 0.85),
    "DPD": Tracer("DPD", 1.25, 0.9, 1.0),
}


@dataclass(frozen=True)
class Focus:
    """A change of bone uptake around a skeleton point (reference-body mm); ``ratio`` < 1 is photopenic."""

    kind: str  # metastasis, cold, fracture, degenerative, dental
    x_mm: float
    y_mm: float
    z: float
    radius_mm: float
    ratio: float
    limb: int
    part: str


@dataclass(frozen=True)
class HotSpot:
    """Tracer outside bone: injection-site extravasation or urine contamination (reference-body mm)."""

    kind: str
    x_mm: float
    y_mm: float
    z: float
    radius_mm: float
    density: float  # uptake per 4 mm^2 relative to bone units
    limb: int


@dataclass(frozen=True)
class Disease:
    """What one study shows besides normal anatomy."""

    metastasis: bool
    superscan: bool
    amyloid_grade: int
    foci: tuple[Focus, ...] = ()
    hotspots: tuple[HotSpot, ...] = ()

    @property
    def lesion_count(self) -> int:
        return sum(f.kind in ("metastasis", "cold") for f in self.foci)

    @property
    def findings(self) -> tuple[str, ...]:
        """Benign findings present (names), for the manifest."""
        kinds = [f.kind for f in self.foci if f.kind not in ("metastasis", "cold")] + [h.kind for h in self.hotspots]
        return tuple(sorted(set(kinds)))


# ------------------------------------------------------------------------------------------ metastases

# Where skeletal metastases occur (red marrow distribution; proximal long bones only).
METASTASIS_PARTS = {
    "thoracic": 0.17, "lumbar": 0.14, "cervical": 0.03, "vertebral_arch": 0.03, "sacrum": 0.05, "ribs": 0.20,
    "ilium": 0.12, "pubis": 0.04, "skull": 0.06, "sternum": 0.03, "scapula": 0.03, "clavicle": 0.01,
    "femur_head": 0.03, "femur": 0.03, "humerus_head": 0.02, "humerus": 0.01,
}
PROXIMAL_LIMIT_MM = {"femur": 1000.0, "humerus": 470.0}


@functools.lru_cache(maxsize=1)
def _template_index():
    """Skeleton points by part, and a k-d tree in (x, y, depth ~ mm) for applying foci."""
    cloud = skeleton_template()
    by_part = {}
    for name, index in PART.items():
        members = np.flatnonzero(cloud.part == index)
        limit = PROXIMAL_LIMIT_MM.get(name)
        if limit is not None:
            members = members[cloud.y[members] < limit]
        by_part[name] = members
    tree = cKDTree(np.column_stack([cloud.x, cloud.y, cloud.z * 180.0]))
    return by_part, tree


def _focus_at(rng, kind, part, radius_mm, ratio) -> Focus:
    by_part, _ = _template_index()
    cloud = skeleton_template()
    members = by_part[part]
    i = int(members[rng.integers(members.size)])
    return Focus(kind, float(cloud.x[i]), float(cloud.y[i]), float(cloud.z[i]), float(radius_mm), float(ratio),
                 int(cloud.limb[i]), part)


def draw_lesion_count(rng: np.random.Generator) -> int:
    """One to dozens: oligometastatic (1-3), several (4-10) or many (11-40)."""
    group = rng.choice(3, p=[0.35, 0.35, 0.30])
    low, high = ((1, 3), (4, 10), (11, 40))[group]
    return int(rng.integers(low, high + 1))


def draw_metastases(rng: np.random.Generator, count: int) -> list[Focus]:
    parts = list(METASTASIS_PARTS)
    weights = np.array([METASTASIS_PARTS[p] for p in parts])
    foci = []
    for part in rng.choice(parts, size=count, p=weights / weights.sum()):
        if rng.random() < 0.05:  # photopenic (lytic) lesion
            foci.append(_focus_at(rng, "cold", part, rng.uniform(8, 16), rng.uniform(0.1, 0.4)))
        else:
            ratio = float(np.clip(rng.lognormal(np.log(3.0), 0.5), 1.5, 10.0))
            foci.append(_focus_at(rng, "metastasis", part, rng.uniform(6, 16), ratio))
    return foci


def superscan_foci(rng: np.random.Generator) -> list[Focus]:
    """Diffuse disease: many confluent foci over the axial skeleton (on top of raised bone uptake)."""
    foci = []
    for part in rng.choice(["thoracic", "lumbar", "ribs", "ilium", "sacrum", "skull", "femur", "humerus"],
                           size=int(rng.integers(25, 60)), p=[0.2, 0.15, 0.25, 0.15, 0.05, 0.08, 0.08, 0.04]):
        foci.append(_focus_at(rng, "metastasis", part, rng.uniform(15, 35), rng.uniform(1.3, 2.2)))
    return foci


# ------------------------------------------------------------------------------------------ benign findings


def _rib_fracture_row(rng) -> list[Focus]:
    """Two to five consecutive ribs, one side, at one lateral position: a vertical row of small foci."""
    by_part, _ = _template_index()
    cloud = skeleton_template()
    side = rng.choice([-1, 1])
    x0 = side * rng.uniform(90, 135)
    ribs = by_part["ribs"]
    near = ribs[(np.abs(cloud.x[ribs] - x0) < 2.0) & (cloud.z[ribs] > 0.3) & (cloud.z[ribs] < 0.75)]
    if near.size == 0:
        return []
    ys = np.sort(cloud.y[near])
    crossings = np.split(ys, np.flatnonzero(np.diff(ys) > 8) + 1)
    n = int(min(rng.integers(2, 6), len(crossings)))
    start = int(rng.integers(0, len(crossings) - n + 1))
    ratio = rng.uniform(2.0, 4.5)
    return [Focus("fracture", float(x0), float(np.mean(c)), 0.5, float(rng.uniform(5, 8)), float(ratio * rng.uniform(0.8, 1.2)),
                  AXIAL, "ribs") for c in crossings[start:start + n]]


def draw_benign(rng: np.random.Generator, age_years: float, rate: float = 1.0) -> list[Focus]:
    """Lasting benign bone findings: degenerative changes (more with age), rib fractures, dental/sinus uptake."""
    foci = []
    aging = float(np.clip((age_years - 35) / 45, 0, 1.2))
    cloud = skeleton_template()
    by_part, _ = _template_index()
    for part, probability, count in (("knee", 0.45, 2), ("humerus_head", 0.25, 2), ("hand", 0.12, 2)):
        if rng.random() < probability * aging * rate:
            severity = rng.uniform(1.3, 2.4)
            for _ in range(1 if rng.random() < 0.3 else count):
                foci.append(_focus_at(rng, "degenerative", part, rng.uniform(14, 24), severity * rng.uniform(0.85, 1.1)))
    if rng.random() < 0.35 * aging * rate:  # lower lumbar facet joints / osteophytes, often asymmetric
        lumbar = by_part["lumbar"]
        low = lumbar[cloud.y[lumbar] > np.percentile(cloud.y[lumbar], 55)]
        for _ in range(int(rng.integers(1, 4))):
            i = int(low[rng.integers(low.size)])
            foci.append(Focus("degenerative", float(cloud.x[i] + rng.choice([-1, 1]) * rng.uniform(10, 28)),
                              float(cloud.y[i]), 0.7, float(rng.uniform(10, 18)), float(rng.uniform(1.4, 2.4)), AXIAL,
                              "lumbar"))
    if rng.random() < 0.05 * rate:
        foci.extend(_rib_fracture_row(rng))
    if rng.random() < 0.12 * rate:
        foci.append(Focus("dental", 0.0, 186.0 + rng.uniform(-25, 4), 0.15, float(rng.uniform(14, 26)),
                          float(rng.uniform(1.6, 3.5)), AXIAL, "face"))
    return foci


def draw_hotspots(rng: np.random.Generator, rate: float = 1.0) -> list[HotSpot]:
    """Tracer outside bone on the day of a study: injection-site extravasation, urine contamination."""
    hotspots = []
    if rng.random() < 0.15 * rate:
        side = rng.choice([-1, 1])
        if rng.random() < 0.6:  # antecubital fossa
            spot = (side * 196.0, rng.uniform(590, 620), ARM_L if side > 0 else ARM_R)
        else:  # dorsum of the hand
            spot = (side * 207.0, rng.uniform(880, 930), FOREARM_L if side > 0 else FOREARM_R)
        hotspots.append(HotSpot("injection", float(spot[0]), float(spot[1]), 0.2, float(rng.uniform(5, 12)),
                                float(rng.lognormal(np.log(1.0), 0.7)), int(spot[2])))
    if rng.random() < 0.05 * rate:
        x = float(rng.uniform(-120, 120))
        hotspots.append(HotSpot("contamination", x, float(rng.uniform(870, 1100)), float(rng.choice([0.02, 0.98])),
                                float(rng.uniform(5, 14)), float(rng.lognormal(np.log(1.2), 0.7)), AXIAL))
    return hotspots


def bone_multipliers(foci) -> np.ndarray:
    """Uptake multiplier per skeleton point: each focus scales points within its radius (Gaussian profile)."""
    _, tree = _template_index()
    cloud = skeleton_template()
    multiplier = np.ones(len(cloud))
    for focus in foci:
        centre = (focus.x_mm, focus.y_mm, focus.z * 180.0)
        index = np.asarray(tree.query_ball_point(centre, focus.radius_mm), dtype=int)
        if index.size == 0:
            continue
        d2 = ((cloud.x[index] - centre[0]) ** 2 + (cloud.y[index] - centre[1]) ** 2
              + (cloud.z[index] * 180.0 - centre[2]) ** 2)
        profile = np.exp(-d2 / (2 * (0.5 * focus.radius_mm) ** 2))
        multiplier[index] *= 1 + (focus.ratio - 1) * profile
    return multiplier


# ------------------------------------------------------------------------------------------ amyloidosis

# Mean projected myocardial uptake per grade, in units of rib uptake on DPD (Perugini: 1 < bone, 2 ~ bone,
# 3 > bone); grade 3 also lowers bone uptake (the tracer goes to the heart).
AMYLOID_HEART = (0.0, 0.5, 1.2, 3.0)
AMYLOID_BONE = (1.0, 1.0, 0.9, 0.55)


def heart_density(grade: int, tracer: Tracer, rib_density: float, rng: np.random.Generator | None = None) -> float:
    """Projected myocardial density (skeleton units) for a Perugini grade and tracer."""
    spread = 1.0 if rng is None else float(rng.lognormal(0, 0.15))
    return AMYLOID_HEART[grade] * tracer.amyloid * rib_density * spread


# ------------------------------------------------------------------------------------------ outcomes

WEIBULL_SHAPE = 1.1
WEIBULL_SCALE_DAYS = 4600.0  # median 9 years for a 65-year-old without bone disease


def hazard_score(metastasis: bool, lesion_count: int, superscan: bool, amyloid_grade: int, age_years: float) -> float:
    """Linear predictor of the proportional-hazards model (log hazard ratio vs a healthy 65-year-old)."""
    return (1.1 * metastasis + 0.35 * np.log1p(lesion_count) + 1.0 * superscan + 0.45 * amyloid_grade
            + 0.045 * (age_years - 65))


def draw_survival(rng: np.random.Generator, score: float, max_follow_up_days: float) -> tuple[float, int]:
    """(time_days, event): Weibull time to death with frailty, censored at end of follow-up or loss."""
    frailty = rng.normal(0, 0.35)
    death = WEIBULL_SCALE_DAYS * (-np.log(rng.random()) / np.exp(score + frailty)) ** (1 / WEIBULL_SHAPE)
    censor = min(rng.uniform(180, max_follow_up_days), rng.exponential(15 * 365.25))
    return float(max(1.0, round(min(death, censor)))), int(death <= censor)


__all__ = ["Tracer", "TRACERS", "Focus", "HotSpot", "Disease", "draw_lesion_count", "draw_metastases",
           "superscan_foci", "draw_benign", "draw_hotspots", "bone_multipliers", "heart_density", "hazard_score", "draw_survival",
           "PARTS"]
