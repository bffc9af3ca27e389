"""Parametric anatomy of the phantom: a skeleton point cloud, organ shapes and the soft-tissue body.

The skeleton is a fixed template of points in body coordinates of a reference adult 1700 mm tall, built once
per process: ``x`` mm across the body from the midline (positive = the patient's left, so it maps to higher
columns in the orientation rule of synthscan/scan.py), ``y`` mm down from the vertex, ``z`` depth as a fraction
of the local antero-posterior body thickness (0 = anterior skin, 1 = posterior skin) and ``w`` uptake per point
(relative tracer per projected area: joints and spine high, long-bone shafts and ribs low). Bones are sampled
on a regular 2 mm grid (jittered once, deterministically) and later splatted onto the detector grid and blurred
by the collimator response, so no per-study rasterization of shapes is needed.

Proportions follow standard anthropometric fractions of stature (Drillis & Contini 1966, as tabulated in
Winter, *Biomechanics and Motor Control of Human Movement*, 4th ed., Fig. 4.1): chin 0.87 H from the floor,
shoulder 0.82 H, elbow 0.63 H, wrist 0.49 H, hip joint 0.51 H, knee 0.285 H, ankle 0.04 H.

A patient (:class:`Body`) scales the template (stature, skeletal frame), poses the limbs (arm abduction,
elbow flexion, leg abduction) and carries the soft tissue (habitus) whose thickness map decides attenuation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

REFERENCE_HEIGHT_MM = 1700.0
GRID_MM = 2.5  # skeleton sampling step; point weights carry their area, so results hardly depend on it
UNIT_AREA_MM2 = 4.0  # uptake values are per 4 mm^2 of projected area

# Limb groups posed separately; the value is the joint they rotate about (reference mm, x for the patient's left).
AXIAL, ARM_R, ARM_L, FOREARM_R, FOREARM_L, LEG_R, LEG_L = range(7)
SHOULDER = (185.0, 320.0)
ELBOW = (200.0, 612.0)
HIP = (90.0, 840.0)

# Bone parts (for per-bone uptake variation and where metastases and benign findings go).
PARTS = ("skull", "face", "mandible", "cervical", "thoracic", "lumbar", "vertebral_arch", "sacrum", "ribs",
         "sternum", "clavicle", "scapula", "ilium", "pubis", "humerus_head", "humerus", "elbow", "forearm",
         "hand", "femur_head", "femur", "knee", "patella", "tibia", "fibula", "foot")
PART = {name: index for index, name in enumerate(PARTS)}


@dataclass(frozen=True)
class PointCloud:
    """Emitting points: body coordinates (mm, mm, depth fraction), uptake, part and limb group of each."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    w: np.ndarray
    part: np.ndarray
    limb: np.ndarray
    side: np.ndarray  # -1 patient's right, +1 left, 0 midline

    @staticmethod
    def concat(clouds) -> "PointCloud":
        return PointCloud(*(np.concatenate([getattr(c, f) for c in clouds]) for f in
                            ("x", "y", "z", "w", "part", "limb", "side")))

    def __len__(self):
        return self.x.size


# ------------------------------------------------------------------------------------------ point primitives


def _jitter(n: int, key: int) -> np.ndarray:
    # Fixed, deterministic jitter of the sampling grid (breaks moire against the detector grid).
    return np.random.default_rng(key).uniform(-0.35, 0.35, (2, n)) * GRID_MM


def _grid(x0, x1, y0, y1):
    xs = np.arange(x0, x1 + GRID_MM / 2, GRID_MM)
    ys = np.arange(y0, y1 + GRID_MM / 2, GRID_MM)
    gx, gy = np.meshgrid(xs, ys)
    return gx.ravel(), gy.ravel()


def _capsule(p0, p1, r0, r1=None, z0=0.5, z1=None):
    """Filled tapered capsule from ``p0`` to ``p1`` (radii ``r0`` -> ``r1``); depth interpolated along it."""
    r1 = r0 if r1 is None else r1
    z1 = z0 if z1 is None else z1
    (ax, ay), (bx, by) = p0, p1
    rmax = max(r0, r1)
    gx, gy = _grid(min(ax, bx) - rmax, max(ax, bx) + rmax, min(ay, by) - rmax, max(ay, by) + rmax)
    dx, dy = bx - ax, by - ay
    t = np.clip(((gx - ax) * dx + (gy - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    keep = np.hypot(gx - ax - t * dx, gy - ay - t * dy) <= r0 + (r1 - r0) * t
    return gx[keep], gy[keep], (z0 + (z1 - z0) * t)[keep]


def _ellipse(cx, cy, ax, ay, z=0.5, angle_deg=0.0):
    a = np.deg2rad(angle_deg)
    r = max(ax, ay)
    gx, gy = _grid(cx - r, cx + r, cy - r, cy + r)
    u = (gx - cx) * np.cos(a) + (gy - cy) * np.sin(a)
    v = -(gx - cx) * np.sin(a) + (gy - cy) * np.cos(a)
    keep = (u / ax) ** 2 + (v / ay) ** 2 <= 1
    return gx[keep], gy[keep], np.full(keep.sum(), float(z))


def _polygon(vertices, z=0.5):
    vertices = np.asarray(vertices, float)
    gx, gy = _grid(vertices[:, 0].min(), vertices[:, 0].max(), vertices[:, 1].min(), vertices[:, 1].max())
    inside = np.zeros(gx.size, bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):  # even-odd ray casting
        crosses = ((y0 > gy) != (y1 > gy)) & (gx < (x1 - x0) * (gy - y0) / (y1 - y0 + 1e-12) + x0)
        inside ^= crosses
    return gx[inside], gy[inside], np.full(inside.sum(), float(z))


def _curve(xs, ys, zs, width):
    """A band of ``width`` mm along a polyline sampled finely (ribs, clavicles, mandible)."""
    seg = np.hypot(np.diff(xs), np.diff(ys))
    arc = np.concatenate([[0], np.cumsum(seg)])
    s = np.arange(0, arc[-1], GRID_MM)
    x, y, z = (np.interp(s, arc, v) for v in (xs, ys, zs))
    tx, ty = np.gradient(x), np.gradient(y)
    norm = np.hypot(tx, ty) + 1e-9
    nx, ny = -ty / norm, tx / norm
    offsets = np.arange(-width / 2 + GRID_MM / 2, width / 2, GRID_MM)
    return ((x[None] + offsets[:, None] * nx[None]).ravel(), (y[None] + offsets[:, None] * ny[None]).ravel(),
            np.broadcast_to(z, (offsets.size, z.size)).ravel())


def _shell(cx, cy, rx, ry, rz, y_max=None, spacing_mm=3.0):
    """Points on an ellipsoid surface (the calvarium): its projection is brighter at the rim, as in scans.

    Sampled at ``spacing_mm`` (one point per spacing^2 of surface area).
    """
    area = 4 * np.pi * ((rx * ry) ** 1.6 / 3 + (rx * rz) ** 1.6 / 3 + (ry * rz) ** 1.6 / 3) ** (1 / 1.6)
    n = int(area / spacing_mm ** 2)
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azimuth = np.pi * (1 + 5 ** 0.5) * i
    x = cx + rx * np.sin(polar) * np.cos(azimuth)
    y = cy + ry * np.cos(polar)
    z = 0.5 + 0.5 * np.sin(polar) * np.sin(azimuth)
    keep = np.ones(n, bool) if y_max is None else (y <= y_max) | (z > 0.6)
    return x[keep], y[keep], z[keep]


# ------------------------------------------------------------------------------------------ the skeleton


def _rib(level: int, y_posterior: float):
    """One rib (level 1-12) as a curve around an elliptic thorax, from the spine to its costal end."""
    half_width = (60, 95, 118, 133, 143, 148, 150, 148, 143, 135, 120, 98)[level - 1]
    end = (0.78, 0.80, 0.80, 0.80, 0.80, 0.78, 0.75, 0.70, 0.66, 0.60, 0.48, 0.36)[level - 1] * np.pi
    drop = (35, 80, 105, 120, 130, 135, 135, 130, 120, 105, 75, 55)[level - 1]
    phi = np.linspace(0, end, 60)
    x = 20 + (half_width - 20) * np.sin(phi)
    y = y_posterior + drop * (phi / np.pi) ** 2
    z = 0.5 + 0.40 * np.cos(phi)
    return _curve(x, y, z, 9.0 if level > 1 else 12.0)


def _rib_neck(level: int, y_posterior: float):
    """The thicker posterior third of a rib (head, neck, angle), added on top of :func:`_rib`."""
    x, y, z = _rib(level, y_posterior)
    keep = z > 0.5 + 0.40 * np.cos(0.3 * np.pi)
    return x[keep], y[keep], z[keep]


def _half_skeleton():
    """Bones of the patient's left side (x > 0) and the midline, as (part, limb, points, uptake) items."""
    items = []

    def add(part, points, uptake, limb=AXIAL, area_mm2=GRID_MM ** 2):
        """``uptake`` per 4 mm^2 of bone; each point stands for ``area_mm2``."""
        items.append((PART[part], limb, points, uptake * area_mm2 / UNIT_AREA_MM2))

    # Skull and face (midline; mirrored later only where marked by x > 0 filtering).
    add("skull", _shell(0, 98, 76, 98, 96, y_max=150), 0.06, area_mm2=9.0)
    add("face", _ellipse(0, 158, 46, 26, z=0.18), 0.3)
    add("face", _ellipse(0, 142, 40, 9, z=0.15), 0.35)  # orbital rims
    add("face", _ellipse(0, 188, 30, 11, z=0.12), 0.45)  # maxilla and teeth
    t = np.linspace(-1, 1, 40)
    add("mandible", _curve(56 * t, 228 - 50 * t ** 2, 0.12 + 0.45 * t ** 2, 9.0), 0.35)

    # Spine: cervical, thoracic, lumbar vertebral bodies and posterior arches.
    def body(half_width, y_center, half_height, z):  # vertebral body: a rectangle with rounded corners
        return _capsule((-half_width + half_height, y_center), (half_width - half_height, y_center), half_height,
                        z0=z)

    y = 176.0
    for level in range(7):
        add("cervical", body(15 + 1.5 * level, y + 7, 7, 0.58), 0.75)
        y += 17.0
    thoracic_levels = []
    for level in range(12):
        height = 17.5 + level * 0.8
        y += height / 2
        thoracic_levels.append(y)
        add("thoracic", body(16 + level * 1.1, y, height / 2, 0.63), 1.2)
        add("vertebral_arch", _ellipse(0, y + height / 2, 13, height / 2, z=0.84), 0.35)  # facets at the disc level
        y += height / 2 + 2.5
    for level in range(5):
        height = 28 + level
        y += height / 2
        add("lumbar", body(25 + 2 * level, y, height / 2, 0.57), 1.2)
        add("vertebral_arch", _ellipse(0, y + height / 2 + 2, 18, height / 2, z=0.82), 0.4)
        y += height / 2 + 6
    add("sacrum", _polygon([(-52, y), (52, y), (26, y + 70), (9, y + 112), (-9, y + 112), (-26, y + 70)], z=0.82),
        0.6)
    sacrum_top = y

    # Thorax: sternum, ribs, clavicles, scapulae.
    add("sternum", _polygon([(-27, 308), (27, 308), (22, 352), (-22, 352)], z=0.07), 0.4)
    add("sternum", _capsule((0, 358), (0, 470), 12, 10, z0=0.06, z1=0.09), 0.3)
    for level, y_posterior in enumerate(thoracic_levels, start=1):
        add("ribs", _rib(level, y_posterior), 0.3)
        add("ribs", _rib_neck(level, y_posterior), 0.08)
    clavicle_x = np.linspace(22, 175, 30)
    add("clavicle", _curve(clavicle_x, 306 - 14 * np.sin(np.linspace(0, np.pi, 30)) - 0.03 * (clavicle_x - 22),
                           np.linspace(0.08, 0.45, 30), 9.0), 0.3)
    add("scapula", _polygon([(80, 300), (150, 305), (163, 332), (108, 475), (98, 470)], z=0.9), 0.22)
    add("scapula", _curve(np.linspace(82, 172, 25), np.linspace(330, 298, 25), np.full(25, 0.88), 9.0), 0.3)

    # Pelvis.
    add("ilium", _polygon([(38, sacrum_top + 5), (62, 728), (105, 706), (146, 718), (158, 756), (132, 800),
                           (108, 834), (72, 842), (44, sacrum_top + 55)], z=0.62), 0.26)
    crest = np.linspace(0, 1, 30)
    add("ilium", _curve(62 + 96 * crest, 728 - 26 * np.sin(np.pi * crest * 0.8) + 30 * crest ** 3, np.full(30, 0.6),
                        10.0), 0.3)  # iliac crest
    add("ilium", _ellipse(44, sacrum_top + 32, 9, 30, z=0.78, angle_deg=-15), 0.6)  # sacro-iliac joint
    add("pubis", _capsule((95, 846), (12, 880), 10, 9, z0=0.35, z1=0.15), 0.45)
    add("pubis", _capsule((88, 862), (62, 908), 13, 10, z0=0.55, z1=0.5), 0.45)
    add("pubis", _capsule((62, 908), (14, 893), 8, z0=0.45, z1=0.25), 0.4)

    # Legs (left): femur, knee, patella, tibia, fibula, foot.
    add("femur_head", _ellipse(90, 840, 24, 24, z=0.5), 0.75, LEG_L)
    add("femur", _capsule((92, 845), (134, 872), 16, z0=0.5), 0.6, LEG_L)
    add("femur", _ellipse(148, 864, 19, 24, z=0.55), 0.55, LEG_L)  # greater trochanter
    add("femur", _capsule((135, 885), (98, 1180), 15, 14, z0=0.5), 0.28, LEG_L)
    add("knee", _ellipse(96, 1200, 40, 26, z=0.5), 0.36, LEG_L)
    add("knee", _ellipse(95, 1238, 40, 16, z=0.5), 0.32, LEG_L)
    add("patella", _ellipse(96, 1192, 21, 24, z=0.05), 0.35, LEG_L)
    add("tibia", _capsule((95, 1255), (90, 1595), 14, 12, z0=0.45), 0.27, LEG_L)
    add("fibula", _capsule((130, 1250), (121, 1605), 6, z0=0.6), 0.12, LEG_L)
    add("foot", _ellipse(90, 1622, 26, 14, z=0.5), 0.55, LEG_L)  # ankle
    add("foot", _ellipse(88, 1655, 32, 22, z=0.75), 0.5, LEG_L)  # calcaneus, talus
    add("foot", _ellipse(92, 1680, 38, 18, z=0.35), 0.45, LEG_L)  # metatarsals seen end-on

    # Arm (left): humerus, elbow, forearm, hand.
    add("humerus_head", _ellipse(182, 322, 25, 26, z=0.5), 0.8, ARM_L)
    add("humerus", _capsule((186, 345), (198, 590), 12, 11, z0=0.5), 0.2, ARM_L)
    add("elbow", _ellipse(200, 605, 26, 14, z=0.5), 0.28, ARM_L)
    add("forearm", _capsule((192, 625), (196, 860), 6.5, 8, z0=0.55), 0.17, FOREARM_L)
    add("forearm", _capsule((208, 620), (214, 858), 7, 6, z0=0.45), 0.17, FOREARM_L)
    add("hand", _ellipse(206, 885, 22, 14, z=0.5), 0.4, FOREARM_L)
    add("hand", _capsule((206, 915), (208, 1010), 19, 13, z0=0.5), 0.22, FOREARM_L)  # metacarpals, fingers
    return items


@functools.lru_cache(maxsize=1)
def skeleton_template() -> PointCloud:
    """The reference skeleton as points (both sides; built once per process, ~0.1 s)."""
    clouds = []
    for key, (part, limb, (x, y, z), uptake) in enumerate(_half_skeleton()):
        midline = abs(float(np.mean(x))) < 12 and limb == AXIAL and PARTS[part] not in ("scapula", "clavicle", "ribs",
                                                                                       "ilium", "pubis")
        sides = (0,) if midline else (-1, 1)
        for side in sides:
            jitter = _jitter(x.size, key * 2 + (side > 0))
            xs = (x if side >= 0 else -x) + jitter[0]
            limb_side = limb if side >= 0 or limb == AXIAL else limb - 1  # *_R precedes *_L
            clouds.append(PointCloud(xs, y + jitter[1], z.astype(float), np.full(x.size, uptake), np.full(x.size, part),
                                     np.full(x.size, limb_side), np.full(x.size, side)))
    return PointCloud.concat(clouds)


TEXTURE_CELL_MM = 24.0


@functools.lru_cache(maxsize=1)
def texture_lattice() -> tuple[np.ndarray, np.ndarray, int]:
    """Bilinear interpolation of a coarse lattice (TEXTURE_CELL_MM) at every template point.

    Returns (corner indices (4, n), corner weights (4, n), lattice size): a study draws one random value
    per lattice node and gets a smooth uptake heterogeneity of its bones with four gathers.
    """
    cloud = skeleton_template()
    gx = (cloud.x + 300.0) / TEXTURE_CELL_MM
    gy = (cloud.y + 50.0) / TEXTURE_CELL_MM
    nx = int(np.ceil(600.0 / TEXTURE_CELL_MM)) + 2
    ny = int(np.ceil(1800.0 / TEXTURE_CELL_MM)) + 2
    ix, iy = np.clip(np.floor(gx).astype(int), 0, nx - 2), np.clip(np.floor(gy).astype(int), 0, ny - 2)
    fx, fy = gx - ix, gy - iy
    index = np.stack([iy * nx + ix, iy * nx + ix + 1, (iy + 1) * nx + ix, (iy + 1) * nx + ix + 1])
    weight = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    return index, weight, nx * ny


def bone_texture(rng: np.random.Generator, strength: float = 0.15) -> np.ndarray:
    """A smooth random uptake multiplier per template point (mean about 1)."""
    index, weight, size = texture_lattice()
    nodes = rng.lognormal(0.0, strength, size)
    return (nodes[index] * weight).sum(axis=0)


# ------------------------------------------------------------------------------------------ organs


@functools.lru_cache(maxsize=None)
def unit_disk(n_rings: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Points filling the unit disk evenly (for organs scaled per study)."""
    r = np.sqrt((np.arange(n_rings * n_rings * 3) + 0.5) / (n_rings * n_rings * 3))
    theta = np.pi * (3 - 5 ** 0.5) * np.arange(r.size)  # sunflower pattern
    return r * np.cos(theta), r * np.sin(theta)


@functools.lru_cache(maxsize=None)
def unit_heart() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Myocardium as points of a thick ellipsoidal shell (left ventricle) in unit coordinates.

    Returns (u, v, depth) with u along the long axis (base -> apex), v across, depth in [-1, 1].
    """
    rng = np.random.default_rng(7)  # fixed template
    p = rng.normal(size=(3, 2400))
    p /= np.linalg.norm(p, axis=0)
    radius = rng.uniform(0.72, 1.0, p.shape[1]) ** (1 / 3)  # wall from 72 % to 100 % of the outer radius
    u, v, d = p * radius
    keep = u > -0.55  # open at the base (valve plane)
    return u[keep], v[keep], d[keep]


# ------------------------------------------------------------------------------------------ the patient


@dataclass(frozen=True)
class Body:
    """One patient's geometry: stature, frame, soft tissue and pose (all mm or degrees)."""

    height_mm: float
    frame: float  # lateral bone scale relative to stature-scaled reference
    habitus: float  # soft-tissue width factor (1 = normal weight)
    depth: float  # antero-posterior trunk thickness factor
    sex: str
    arm_abduction_deg: tuple[float, float]  # (right, left), outward
    elbow_flexion_deg: tuple[float, float]  # inward rotation of the forearm about the elbow
    leg_abduction_deg: tuple[float, float]
    shift_mm: float  # lateral position on the table
    top_mm: float  # vertex below the top of the field of view

    @property
    def scale(self) -> float:
        return self.height_mm / REFERENCE_HEIGHT_MM

    @property
    def weight_kg(self) -> float:
        bmi = 24.0 * self.habitus ** 1.5 * self.depth ** 0.5
        return bmi * (self.height_mm / 1000) ** 2


def draw_body(rng: np.random.Generator, sex: str, field_length_mm: float) -> Body:
    """Random stature, habitus and pose of a supine adult (whole-body bone scan positioning)."""
    height = rng.normal(1760 if sex == "M" else 1630, 70)
    height = float(np.clip(height, 1480, min(1980, field_length_mm - 140)))
    habitus = float(np.clip(rng.lognormal(0.07, 0.10), 0.8, 1.5))
    depth = float(np.clip(habitus * rng.lognormal(0, 0.06), 0.8, 1.55))
    arms = rng.normal(3, 2.5, 2).clip(0, 10)  # arms by the sides, as positioned for a whole-body pass
    elbows = rng.normal(3, 4, 2).clip(-4, 18)
    legs = rng.normal(1.5, 1.5, 2).clip(-2, 6)
    top = float(rng.uniform(60, max(80, min(260, field_length_mm - height - 40))))
    return Body(height, float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)) * (1.0 if sex == "M" else 0.94),
                habitus, depth, sex, (float(arms[0]), float(arms[1])), (float(elbows[0]), float(elbows[1])),
                (float(legs[0]), float(legs[1])), float(rng.normal(0, 15)), top)


def draw_pose(rng: np.random.Generator, body: Body, field_length_mm: float) -> Body:
    """The same patient positioned anew for another study (arms, legs, table position)."""
    fresh = draw_body(rng, body.sex, field_length_mm)
    top = min(fresh.top_mm, max(20.0, field_length_mm - body.height_mm - 20))
    return replace(body, arm_abduction_deg=fresh.arm_abduction_deg, elbow_flexion_deg=fresh.elbow_flexion_deg,
                   leg_abduction_deg=fresh.leg_abduction_deg, shift_mm=fresh.shift_mm, top_mm=top)


# Supine posture: lying on the table the chin drops and the shoulders ride up relative to standing
# anthropometry (NM1, PHANTOM.md: shoulders at ~15 % and the bladder at ~43-47 % of body length). Knots map
# reference (standing) y to supine y, both mm from the vertex of the 1700 mm reference body.
SUPINE_KNOTS = ((0.0, 228.0, 300.0, 840.0, 1215.0, 1700.0), (0.0, 198.0, 248.0, 755.0, 1190.0, 1700.0))


def supine_y(y_ref):
    """Reference (standing) y -> supine y (mm from the vertex, reference stature)."""
    return np.interp(y_ref, *SUPINE_KNOTS)


def _rotate(x, y, pivot, angle_deg):
    a = np.deg2rad(angle_deg)
    dx, dy = x - pivot[0], y - pivot[1]
    return pivot[0] + dx * np.cos(a) - dy * np.sin(a), pivot[1] + dx * np.sin(a) + dy * np.cos(a)


def limb_pivots(body: Body) -> dict:
    """Joint positions (reference mm, before scaling) and rotation (degrees, +counter-clockwise in x/y)."""
    right_arm, left_arm = body.arm_abduction_deg
    right_elbow, left_elbow = body.elbow_flexion_deg
    right_leg, left_leg = body.leg_abduction_deg
    # In (x right->left, y down) coordinates a positive angle turns +y towards -x... so the left arm
    # swings outwards (to +x) with a negative angle and the right arm with a positive one.
    return {
        ARM_R: [((-SHOULDER[0], SHOULDER[1]), right_arm)],
        ARM_L: [(SHOULDER, -left_arm)],
        FOREARM_R: [((-SHOULDER[0], SHOULDER[1]), right_arm), ((-ELBOW[0], ELBOW[1]), -right_elbow)],
        FOREARM_L: [(SHOULDER, -left_arm), (ELBOW, left_elbow)],
        LEG_R: [((-HIP[0], HIP[1]), right_leg)],
        LEG_L: [(HIP, -left_leg)],
    }


def pose_points(x: np.ndarray, y: np.ndarray, limb: np.ndarray, body: Body) -> tuple[np.ndarray, np.ndarray]:
    """Reference-body points -> this patient's body coordinates (mm from midline and vertex)."""
    x = x.astype(float, copy=True)
    y = y.astype(float, copy=True)
    for group, rotations in limb_pivots(body).items():
        members = limb == group
        if not members.any():
            continue
        gx, gy = x[members], y[members]
        # Apply the distal joint first (elbow), then the proximal (shoulder), both in the rest pose frame.
        for pivot, angle in reversed(rotations):
            gx, gy = _rotate(gx, gy, pivot, angle)
        x[members], y[members] = gx, gy
    return x * body.scale * body.frame + body.shift_mm, supine_y(y) * body.scale


def pose_point(x: float, y: float, limb: int, body: Body) -> tuple[float, float]:
    px, py = pose_points(np.array([x]), np.array([y]), np.array([limb]), body)
    return float(px[0]), float(py[0])


# ------------------------------------------------------------------------------------------ soft tissue

# Trunk outline of the reference body: (y mm from vertex, half-width mm, antero-posterior thickness mm).
TRUNK = np.array([
    (268, 62, 115), (290, 120, 140), (305, 160, 160), (330, 180, 205), (420, 168, 245), (520, 155, 235), (620, 140, 205),
    (720, 148, 200), (820, 160, 195), (870, 160, 180), (905, 120, 150),
])
ABDOMEN = (500.0, 840.0)  # where obesity adds most depth


def to_pixels(x_mm, y_mm, body: Body, shape, spacing_mm):
    """Body coordinates (mm) -> (row, col) in the orientation rule (head at row 0, patient's left right)."""
    return (body.top_mm + y_mm) / spacing_mm[0], (shape[1] - 1) / 2 + x_mm / spacing_mm[1]


def _box(shape, spacing_mm, body, x0, x1, y0, y1):
    (r0, c0), (r1, c1) = (to_pixels(x0, y0, body, shape, spacing_mm), to_pixels(x1, y1, body, shape, spacing_mm))
    r0, r1 = max(int(np.floor(r0)), 0), min(int(np.ceil(r1)) + 1, shape[0])
    c0, c1 = max(int(np.floor(c0)), 0), min(int(np.ceil(c1)) + 1, shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    y = (np.arange(r0, r1, dtype=np.float32) * spacing_mm[0] - body.top_mm)[:, None]
    x = ((np.arange(c0, c1, dtype=np.float32) - (shape[1] - 1) / 2) * spacing_mm[1])[None, :]
    return (slice(r0, r1), slice(c0, c1)), x, y


def _capsule_into(out, shape, spacing_mm, body, p0, p1, r0, r1, flat_mm=None):
    """Thickness (mm) of a tapered limb segment of round (or flat) cross-section, maxed into ``out``."""
    (ax, ay), (bx, by) = p0, p1
    rmax = max(r0, r1)
    box = _box(shape, spacing_mm, body, min(ax, bx) - rmax, max(ax, bx) + rmax, min(ay, by) - rmax,
               max(ay, by) + rmax)
    if box is None:
        return
    where, x, y = box
    dx, dy = bx - ax, by - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    d2 = (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2
    r = r0 + (r1 - r0) * t
    if flat_mm is None:
        thickness = 2 * np.sqrt(np.maximum(r * r - d2, 0))
    else:
        thickness = np.where(d2 < r * r, np.float32(flat_mm), np.float32(0))
    np.maximum(out[where], thickness, out=out[where])


def _ellipsoid_into(out, shape, spacing_mm, body, cx, cy, ax, ay, depth_mm, add=False):
    box = _box(shape, spacing_mm, body, cx - ax, cx + ax, cy - ay, cy + ay)
    if box is None:
        return
    where, x, y = box
    thickness = depth_mm * np.sqrt(np.maximum(1 - ((x - cx) / ax) ** 2 - ((y - cy) / ay) ** 2, 0))
    if add:
        out[where] += thickness
    else:
        np.maximum(out[where], thickness, out=out[where])


def soft_tissue(body: Body, shape, spacing_mm) -> tuple[np.ndarray, np.ndarray]:
    """Antero-posterior body thickness (mm) per pixel and the part of it that is lung (low density)."""
    thickness = np.zeros(shape, np.float32)
    lung = np.zeros(shape, np.float32)
    s, f, h = body.scale, body.scale * body.frame, body.habitus

    # Trunk: a super-ellipse cross-section whose width and depth follow the TRUNK outline.
    y_ref = supine_y(TRUNK[:, 0]) * s
    box = _box(shape, spacing_mm, body, body.shift_mm - 260 * f * h, body.shift_mm + 260 * f * h, y_ref[0],
               y_ref[-1])
    if box is not None:
        where, x, y = box
        fat = np.where((y > ABDOMEN[0] * s) & (y < ABDOMEN[1] * s), body.depth ** 1.3, body.depth)
        half_width = np.interp(y, y_ref, TRUNK[:, 1]) * f * np.where(y > supine_y(480) * s, h, h ** 0.6)
        depth = np.interp(y, y_ref, TRUNK[:, 2]) * s * fat
        u = np.minimum(np.abs(x - body.shift_mm) / half_width, 1.0)
        np.maximum(thickness[where], depth * (1 - u ** 2.4) ** (1 / 2.4), out=thickness[where])

    # Head and neck.
    _ellipsoid_into(thickness, shape, spacing_mm, body, body.shift_mm, 97 * s, 80 * f, 98 * s, 195 * s)
    _capsule_into(thickness, shape, spacing_mm, body, (body.shift_mm, 175 * s), (body.shift_mm, 245 * s),
                  55 * f * h ** 0.5, 58 * f * h ** 0.5)

    # Limbs, posed like the skeleton.
    for side, arm, forearm, leg in ((-1, ARM_R, FOREARM_R, LEG_R), (1, ARM_L, FOREARM_L, LEG_L)):
        def at(x, y, limb):
            return pose_point(side * x, y, limb, body)

        _capsule_into(thickness, shape, spacing_mm, body, at(178, 335, arm), at(200, 600, arm), 64 * s * h,
                      45 * s * h)
        _capsule_into(thickness, shape, spacing_mm, body, at(200, 605, forearm), at(204, 860, forearm),
                      40 * s * h, 28 * s * h ** 0.5)
        _capsule_into(thickness, shape, spacing_mm, body, at(205, 890, forearm), at(207, 1010, forearm),
                      34 * s, 26 * s, flat_mm=32 * s)
        _capsule_into(thickness, shape, spacing_mm, body, at(92, 875, leg), at(96, 1210, leg), 70 * s * h,
                      45 * s * h ** 0.5)
        _capsule_into(thickness, shape, spacing_mm, body, at(96, 1210, leg), at(94, 1350, leg),
                      45 * s * h ** 0.5, 48 * s * h ** 0.5)
        _capsule_into(thickness, shape, spacing_mm, body, at(94, 1350, leg), at(90, 1615, leg),
                      48 * s * h ** 0.5, 30 * s)
        fx, fy = at(90, 1665, leg)
        _ellipsoid_into(thickness, shape, spacing_mm, body, fx, fy, 46 * s, 38 * s, 200 * s)
        _ellipsoid_into(lung, shape, spacing_mm, body, body.shift_mm + side * 82 * f, supine_y(445) * s, 70 * f, 125 * s,
                        185 * s)
        if body.sex == "F":
            _ellipsoid_into(thickness, shape, spacing_mm, body, body.shift_mm + side * 88 * f, supine_y(475) * s, 72 * f * h,
                            60 * s * h, 45 * h ** 2, add=True)
    return thickness, np.minimum(lung, 0.8 * thickness)


# ------------------------------------------------------------------------------------------ organs per patient

HEART_CENTRE = (45.0, 455.0)  # reference mm: left lower chest (centre of the left ventricle)
HEART_AXIS_DEG = 50.0  # long axis from base (up, right) to apex (down, left), below the horizontal
KIDNEY_CENTRE = (62.0, 622.0)
BLADDER_CENTRE_Y = 842.0


@dataclass(frozen=True)
class Organ:
    """An organ's points in this patient's body coordinates (mm), depth fraction, uptake per point."""

    name: str
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    w: np.ndarray
    centre_mm: tuple[float, float]
    half_axes_mm: tuple[float, float]


def _place(body: Body, x_ref: float, y_ref: float) -> tuple[float, float]:
    return x_ref * body.scale * body.frame + body.shift_mm, float(supine_y(y_ref)) * body.scale


def ellipse_organ(name, body: Body, centre_ref, half_axes_mm, z, density, angle_deg=0.0) -> Organ:
    """A filled ellipse of uniform projected ``density`` (uptake per 4 mm^2, the skeleton's unit)."""
    u, v = unit_disk()
    a, b = half_axes_mm
    angle = np.deg2rad(angle_deg)
    cx, cy = _place(body, *centre_ref)
    x = cx + a * u * np.cos(angle) - b * v * np.sin(angle)
    y = cy + a * u * np.sin(angle) + b * v * np.cos(angle)
    w = np.full(u.size, density * np.pi * a * b / u.size / UNIT_AREA_MM2)
    return Organ(name, x, y, np.full(u.size, float(z)), w, (cx, cy), (a, b))


def heart(body: Body, density: float) -> Organ:
    """Left-ventricular myocardium (a thick open shell) with mean projected ``density``."""
    u, v, d = unit_heart()
    s = body.scale
    long_axis, short_axis, depth_axis = 52 * s, 34 * s, 32 * s
    angle = np.deg2rad(HEART_AXIS_DEG)
    cx, cy = _place(body, *HEART_CENTRE)
    x = cx + long_axis * u * np.cos(angle) - short_axis * v * np.sin(angle)
    y = cy + long_axis * u * np.sin(angle) + short_axis * v * np.cos(angle)
    z = 0.33 + d * depth_axis / (220 * body.depth)
    area = np.pi * long_axis * short_axis
    w = np.full(u.size, density * area / u.size / UNIT_AREA_MM2)
    return Organ("heart", x, y, z, w, (cx, cy), (long_axis, short_axis))
