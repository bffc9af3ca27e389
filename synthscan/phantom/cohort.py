"""The phantom cohort: seeded patients with one or more studies, rendered scans, fake identities, and a site's
archive on disk (one NM DICOM file per study, the manifest, and ground truth side files).

Randomness is explicit and per record: patient ``i`` of site ``S`` under ``--seed s`` draws from
``SeedSequence([key(S), s, i, ...])``, so a study never depends on how many patients are made or in which order
(or in which worker process).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from synthscan.phantom import PHANTOM_VERSION
from synthscan.phantom.acquisition import Emitters, acquire, expected_counts
from synthscan.phantom.anatomy import (BLADDER_CENTRE_Y, HEART_AXIS_DEG, KIDNEY_CENTRE, PARTS, Body, Organ,
                                       bone_texture, draw_body, draw_pose,
                                       ellipse_organ, heart, pose_point, pose_points, skeleton_template, soft_tissue,
                                       to_pixels)
from synthscan.phantom.disease import (AMYLOID_BONE, TRACERS, Disease, Focus, bone_multipliers,
                                       draw_benign, draw_hotspots, draw_lesion_count, draw_metastases, draw_survival,
                                       hazard_score, heart_density, superscan_foci)
from synthscan.phantom.sites import Site
from synthscan.scan import Scan, views_key

RIB_UPTAKE = 0.30  # template uptake of ribs (anatomy._half_skeleton), the reference for the heart
SOFT_TISSUE_PER_MM = 1.6e-3  # soft-tissue emission per mm of water, in skeleton units (calibrated to NM1)
BLOOD_POOL = 0.12  # projected density of the mediastinal blood pool, skeleton units


@dataclass(frozen=True)
class Patient:
    """Everything that stays the same across a patient's studies."""

    site: Site
    seed: int
    index: int
    sex: str
    age_years: float
    body: Body
    metastasis: bool
    superscan: bool
    lesions_per_study: tuple[int, ...]  # metastatic foci shown at each study (progression)
    lesion_pool: tuple[Focus, ...]
    amyloid_grade: int
    benign: tuple[Focus, ...]
    time_days: float  # from the first study
    event: int
    study_offsets_days: tuple[int, ...]

    @property
    def patient_id(self) -> str:
        return f"{self.site.name}-{self.seed}-{self.index:06d}"

    def study_id(self, k: int) -> str:
        return f"{self.patient_id}-{k + 1}"


@dataclass(frozen=True)
class StudySpec:
    """All parameters of one study: rendering it is deterministic given a noise generator."""

    patient: Patient
    study_index: int
    body: Body
    disease: Disease
    bone_scale: float
    part_scale: tuple[float, ...]
    texture_seed: int
    soft_tissue_per_mm: float
    kidney_density: tuple[float, float]
    bladder_density: float
    bladder_half_axes_mm: tuple[float, float]
    heart_density: float
    blood_pool: float
    anterior_counts: float
    activity_mbq: float
    uptake_minutes: float


@dataclass(frozen=True)
class Study:
    spec: StudySpec
    scan: Scan
    truth: dict


def _rng(site: Site, seed: int, *path: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([site.key, int(seed), *map(int, path)]))


def _field_length(site: Site) -> float:
    return site.shape[0] * site.pixel_spacing_mm


# ------------------------------------------------------------------------------------------ drawing


def draw_patient(site: Site, seed: int, index: int, *, metastasis: bool | None = None,
                 superscan: bool | None = None, lesion_count: int | None = None, amyloid_grade: int | None = None,
                 benign: bool = True, repeat: bool | None = None) -> Patient:
    """Patient ``index`` of a site's cohort; keyword overrides fix the disease (for tests and figures)."""
    rng = _rng(site, seed, index, 0)
    mix = site.case_mix
    sex = "F" if rng.random() < mix.female else "M"
    age = float(np.clip(rng.normal(mix.age_mean, mix.age_sd), 25, 95))
    body = draw_body(rng, sex, _field_length(site))
    drawn_metastasis = bool(rng.random() < mix.metastasis)
    drawn_superscan = bool(rng.random() < mix.superscan)
    drawn_grade = int(rng.choice(4, p=np.asarray(mix.amyloid_grades) / sum(mix.amyloid_grades)))
    drawn_count = draw_lesion_count(rng)
    metastasis = drawn_metastasis if metastasis is None else bool(metastasis)
    superscan = (metastasis and drawn_superscan) if superscan is None else bool(superscan)
    metastasis = metastasis or superscan
    grade = drawn_grade if amyloid_grade is None else int(amyloid_grade)
    count = drawn_count if lesion_count is None else int(lesion_count)
    if superscan:
        pool = superscan_foci(rng)
        count = len(pool)
    elif metastasis:
        pool = draw_metastases(rng, count + 20)
    else:
        pool, count = [], 0
    benign_foci = draw_benign(rng, age, mix.benign_rate) if benign else []
    time_days, event = draw_survival(rng, hazard_score(metastasis, count, superscan, grade, age), mix.follow_up_days)
    offsets = [0]
    n_repeat = int(rng.integers(1, 4)) if (rng.random() < mix.repeat if repeat is None else repeat) else 0
    for _ in range(n_repeat):
        offsets.append(offsets[-1] + int(rng.integers(90, 720)))
    offsets = [o for o in offsets if o == 0 or o < time_days - 14]
    shown = [count]
    for _ in offsets[1:]:  # metastatic disease progresses between studies
        shown.append(min(len(pool), shown[-1] + (int(rng.poisson(3)) if metastasis and rng.random() < 0.6 else 0)))
    return Patient(site, int(seed), int(index), sex, age, body, metastasis, superscan, tuple(shown), tuple(pool),
                   grade, tuple(benign_foci), time_days, event, tuple(offsets))


def draw_study(patient: Patient, k: int = 0, anterior_counts: float | None = None) -> StudySpec:
    """The ``k``-th study of a patient: positioning, biodistribution of the day, counts."""
    site = patient.site
    rng = _rng(site, patient.seed, patient.index, 2, k)
    tracer = TRACERS[site.tracer]
    body = patient.body if k == 0 else draw_pose(rng, patient.body, _field_length(site))
    shown = patient.lesion_pool[: patient.lesions_per_study[k]]
    disease = Disease(patient.metastasis, patient.superscan, patient.amyloid_grade,
                      tuple(shown) + patient.benign, tuple(draw_hotspots(rng, site.case_mix.benign_rate)))
    bone = float(rng.lognormal(0, 0.12)) * AMYLOID_BONE[patient.amyloid_grade]
    soft = SOFT_TISSUE_PER_MM * tracer.soft_tissue * float(rng.lognormal(0, 0.18))
    kidney = 0.30 * tracer.kidney * float(rng.lognormal(0, 0.3))
    bladder = float(rng.lognormal(np.log(2.8), 0.35))
    fill = float(rng.uniform(0.7, 1.2))
    if patient.superscan:  # the skeleton takes up the tracer: faint kidneys and bladder, low soft tissue
        bone *= float(rng.uniform(2.5, 3.5))
        soft *= 0.5
        kidney *= 0.1
        bladder *= 0.25
    if patient.amyloid_grade == 3:
        soft *= 1.3
    part_scale = tuple(float(v) for v in rng.lognormal(0, 0.08, len(PARTS)))
    age = patient.age_years + patient.study_offsets_days[k] / 365.25
    if age < 30:  # open growth plates: bright knees and ankles
        part_scale = tuple(v * (1.6 if name in ("knee", "foot") else 1.0) for v, name in zip(part_scale, PARTS))
    counts = anterior_counts if anterior_counts is not None else float(np.clip(
        site.counts_median * rng.lognormal(0, site.counts_spread), 0.5e6, 4.0e6))
    return StudySpec(
        patient, k, body, disease, bone, part_scale, int(rng.integers(2 ** 31)), soft,
        (kidney * float(rng.lognormal(0, 0.1)), kidney * float(rng.lognormal(0, 0.1))), bladder,
        (38 * fill, 28 * fill), heart_density(patient.amyloid_grade, tracer, RIB_UPTAKE * bone, rng),
        BLOOD_POOL * float(rng.lognormal(0, 0.3)) * (0.5 if patient.superscan else 1.0), counts,
        float(rng.uniform(*site.activity_mbq)), float(rng.uniform(*site.uptake_minutes)))


# ------------------------------------------------------------------------------------------ rendering


def _organs(spec: StudySpec) -> list[Organ]:
    body = spec.body
    s = body.scale
    organs = [
        ellipse_organ("kidney_right", body, (-KIDNEY_CENTRE[0], KIDNEY_CENTRE[1] + 12), (27 * s, 55 * s), 0.75,
                      spec.kidney_density[0], angle_deg=-12),
        ellipse_organ("kidney_left", body, KIDNEY_CENTRE, (27 * s, 55 * s), 0.75, spec.kidney_density[1],
                      angle_deg=12),
        ellipse_organ("bladder", body, (0.0, BLADDER_CENTRE_Y), spec.bladder_half_axes_mm, 0.3, spec.bladder_density),
    ]
    # Residual blood pool at 2-4 h (a few per cent of the activity): heart chambers and great vessels, liver.
    organs.append(ellipse_organ("blood_pool", body, (12.0, 430.0), (62 * s, 78 * s), 0.4, spec.blood_pool))
    organs.append(ellipse_organ("liver", body, (-75.0, 560.0), (85 * s, 62 * s), 0.45, 0.5 * spec.blood_pool,
                                angle_deg=-15))
    if spec.heart_density > 0:
        organs.append(heart(body, spec.heart_density))
    for spot in spec.disease.hotspots:
        x, y = pose_point(spot.x_mm, spot.y_mm, spot.limb, body)
        organ = ellipse_organ(spot.kind, body, (0.0, 0.0), (spot.radius_mm, spot.radius_mm), spot.z, spot.density)
        organs.append(Organ(spot.kind, organ.x - organ.centre_mm[0] + x, organ.y - organ.centre_mm[1] + y, organ.z,
                            organ.w, (x, y), organ.half_axes_mm))
    return organs


def _truth(spec: StudySpec, organs: list[Organ]) -> dict:
    """Ground truth in the canonical orientation: lesion centres (row, col; the same in both views) and the heart."""
    site, body = spec.patient.site, spec.body
    spacing = (site.pixel_spacing_mm, site.pixel_spacing_mm)
    lesions = []
    for focus in spec.disease.foci:
        x, y = pose_point(focus.x_mm, focus.y_mm, focus.limb, body)
        row, col = to_pixels(x, y, body, site.shape, spacing)
        lesions.append({"kind": focus.kind, "row": round(float(row), 1), "col": round(float(col), 1),
                        "part": focus.part, "radius_mm": round(focus.radius_mm, 1), "ratio": round(focus.ratio, 2),
                        "depth": round(focus.z, 2)})
    spot_organs = organs[len(organs) - len(spec.disease.hotspots):]
    for spot, organ in zip(spec.disease.hotspots, spot_organs):
        row, col = to_pixels(*organ.centre_mm, body, site.shape, spacing)
        lesions.append({"kind": spot.kind, "row": round(float(row), 1), "col": round(float(col), 1), "part": "soft tissue",
                        "radius_mm": round(spot.radius_mm, 1), "ratio": None, "depth": spot.z})
    organ = heart(body, 0.0)  # where the heart is, also when it takes up no tracer (H/CL of normal scans)
    row, col = to_pixels(*organ.centre_mm, body, site.shape, spacing)
    heart_region = {"row": round(float(row), 1), "col": round(float(col), 1),
                    "half_axes_px": [round(a / site.pixel_spacing_mm, 1) for a in organ.half_axes_mm],
                    "axis_deg": HEART_AXIS_DEG, "grade": spec.patient.amyloid_grade}
    organ_centres = {}
    for organ in organs[:3]:  # kidneys and bladder
        row, col = to_pixels(*organ.centre_mm, body, site.shape, spacing)
        organ_centres[organ.name] = {"row": round(float(row), 1), "col": round(float(col), 1)}
    return {"study_id": spec.patient.study_id(spec.study_index), "orientation": "canonical (synthscan/scan.py)",
            "lesions": lesions, "heart": heart_region, "organs": organ_centres, "superscan": spec.patient.superscan,
            "findings": list(spec.disease.findings)}


def expected(spec: StudySpec) -> tuple[np.ndarray, list[Organ]]:
    """Noise-free images ``(2, H, W)`` of a study (arbitrary scale) and the organs drawn into them."""
    site, body = spec.patient.site, spec.body
    camera = site.camera()
    spacing = camera.pixel_spacing_mm
    template = skeleton_template()
    activity = (template.w * spec.bone_scale * np.asarray(spec.part_scale)[template.part]
                * bone_multipliers(spec.disease.foci) * bone_texture(np.random.default_rng(spec.texture_seed)))
    x, y = pose_points(template.x, template.y, template.limb, body)
    organs = _organs(spec)
    xs = np.concatenate([x] + [o.x for o in organs])
    ys = np.concatenate([y] + [o.y for o in organs])
    rows, cols = to_pixels(xs, ys, body, site.shape, spacing)
    emitters = Emitters(rows, cols, np.concatenate([template.z] + [o.z for o in organs]),
                        np.concatenate([activity] + [o.w for o in organs]))
    thickness, lung = soft_tissue(body, site.shape, spacing)
    return expected_counts(emitters, spec.soft_tissue_per_mm, thickness, lung, camera), organs


def render(spec: StudySpec, noise: np.random.Generator | None = None) -> Study:
    """Render a study: expected counts from anatomy and disease, then Poisson noise (``noise``; seeded from
    the study if not given)."""
    site = spec.patient.site
    camera = site.camera()
    spacing = camera.pixel_spacing_mm
    images, organs = expected(spec)
    if noise is None:
        noise = _rng(site, spec.patient.seed, spec.patient.index, 3, spec.study_index)
    counts = acquire(noise, images, spec.anterior_counts, camera)
    scan = Scan(counts, spacing, ("anterior", "posterior"),
                meta={"study_id": spec.patient.study_id(spec.study_index)})
    return Study(spec, scan, _truth(spec, organs))


def landmarks(spec: StudySpec) -> dict[str, tuple[float, float]]:
    """Mean (row, col) of every bone part of the patient's skeleton (for region-of-interest checks).

    Paired bones are reported per side (``scapula_left``, ``scapula_right``), midline bones by name.
    """
    site, template = spec.patient.site, skeleton_template()
    x, y = pose_points(template.x, template.y, template.limb, spec.body)
    rows, cols = to_pixels(x, y, spec.body, site.shape, (site.pixel_spacing_mm, site.pixel_spacing_mm))
    marks = {}
    for side, suffix in ((-1, "_right"), (0, ""), (1, "_left")):
        members = template.side == side
        count = np.bincount(template.part[members], minlength=len(PARTS))
        row = np.bincount(template.part[members], rows[members], minlength=len(PARTS)) / np.maximum(count, 1)
        col = np.bincount(template.part[members], cols[members], minlength=len(PARTS)) / np.maximum(count, 1)
        marks.update({name + suffix: (float(row[i]), float(col[i])) for i, name in enumerate(PARTS) if count[i]})
    return marks


def simulate_patient(site: Site, seed: int, index: int) -> list[Study]:
    """All studies of one patient of a site's cohort."""
    patient = draw_patient(site, seed, index)
    return [render(draw_study(patient, k)) for k in range(len(patient.study_offsets_days))]


# ------------------------------------------------------------------------------------------ records


def _identity(patient: Patient) -> dict:
    """Realistic fake identity of a patient (seeded), so that de-identification has something to remove."""
    site = patient.site
    inst = site.institution
    rng = _rng(site, patient.seed, patient.index, 1)
    given = inst.given_female if patient.sex == "F" else inst.given_male
    name = f"{inst.surnames[rng.integers(len(inst.surnames))]}^{given[rng.integers(len(given))]}"
    if rng.random() < 0.3:
        name += f"^{chr(65 + int(rng.integers(26)))}"
    first = datetime.date(site.study_years[0], 1, 1) + datetime.timedelta(
        days=int(rng.integers(0, 365 * (site.study_years[1] - site.study_years[0]))))
    birth = first - datetime.timedelta(days=int(patient.age_years * 365.25))
    return {"patient_name": name, "mrn": f"{inst.mrn_prefix}{int(rng.integers(10 ** 6, 10 ** 7))}",
            "birth": birth, "first": first, "weight_noise": float(rng.normal(0, 3)),
            "physician": inst.physicians[rng.integers(len(inst.physicians))]}


def dicom_meta(study: Study) -> dict:
    """The identifying and acquisition attributes written into the study's DICOM file."""
    spec = study.spec
    patient, site, k = spec.patient, spec.patient.site, spec.study_index
    inst = site.institution
    identity = _identity(patient)
    rng = _rng(site, patient.seed, patient.index, 4, k)
    date = identity["first"] + datetime.timedelta(days=patient.study_offsets_days[k])
    hour = int(rng.integers(8, 17))
    uid = [site.name, str(patient.seed), str(patient.index), str(k)]
    age = patient.age_years + patient.study_offsets_days[k] / 365.25
    return {
        "patient_name": identity["patient_name"], "patient_id": identity["mrn"],
        "patient_birth_date": identity["birth"].strftime("%Y%m%d"), "patient_sex": patient.sex,
        "patient_age_years": int(age), "patient_weight_kg": round(spec.body.weight_kg + identity["weight_noise"], 1),
        "patient_size_m": round(spec.body.height_mm / 1000, 2),
        "study_instance_uid": generate_uid(entropy_srcs=uid + ["study"]),
        "series_instance_uid": generate_uid(entropy_srcs=uid + ["series"]),
        "sop_instance_uid": generate_uid(entropy_srcs=uid + ["instance"]),
        "frame_of_reference_uid": generate_uid(entropy_srcs=uid + ["frame"]),
        "study_date": date.strftime("%Y%m%d"), "study_time": f"{hour:02d}{int(rng.integers(60)):02d}{int(rng.integers(60)):02d}",
        "accession_number": f"{inst.accession_prefix}{date.year % 100:02d}{int(rng.integers(10 ** 5, 10 ** 6))}",
        "dicom_study_id": str(int(rng.integers(1000, 99999))),
        "referring_physician": identity["physician"],
        "performing_physician": inst.physicians[int(rng.integers(len(inst.physicians)))],
        "operator_name": inst.operators[int(rng.integers(len(inst.operators)))],
        "institution_name": inst.name, "institution_address": inst.address,
        "station_name": inst.stations[int(rng.integers(len(inst.stations)))],
        "manufacturer": site.manufacturer, "manufacturer_model": site.camera_model,
        "device_serial_number": site.device_serial, "software_versions": f"synthscan phantom {PHANTOM_VERSION}",
        "tracer": site.tracer, "activity_mbq": round(spec.activity_mbq), "uptake_minutes": round(spec.uptake_minutes),
        "collimator": site.collimator, "camera": site.camera_name,
        "scan_velocity_mm_s": site.scan_velocity_mm_s,
        "series_description": "WB ANT/POST", "study_description": "NM Whole Body Bone Scan",
        "patient_comments": f"Referred by {identity['physician'].split('^')[0]}; phone 555-{int(rng.integers(1000, 9999))}",
        "posterior_mirrored": site.posterior_mirrored,
    }


def manifest_row(study: Study, path: str) -> dict:
    """The manifest row of a study (DESIGN.md section 5 columns plus phantom extras)."""
    spec = study.spec
    patient, site, k = spec.patient, spec.patient.site, spec.study_index
    return {
        "study_id": patient.study_id(k), "patient_id": patient.patient_id, "site": site.name, "tracer": site.tracer,
        "camera": site.camera_name, "path": path, "views": views_key(study.scan.views),
        "rows": study.scan.shape[0], "cols": study.scan.shape[1], "pixel_spacing_mm": site.pixel_spacing_mm,
        "total_counts": int(study.scan.total_counts), "activity_mbq": round(spec.activity_mbq),
        "uptake_minutes": round(spec.uptake_minutes), "metastasis": int(patient.metastasis),
        "amyloid_grade": patient.amyloid_grade, "lesion_count": spec.disease.lesion_count,
        "age_years": round(patient.age_years + patient.study_offsets_days[k] / 365.25, 1), "sex": patient.sex,
        "time_days": max(1.0, patient.time_days - patient.study_offsets_days[k]), "event": patient.event,
        "synthetic": 0, "source": "real", "seed": patient.seed, "condition": None, "guidance_scale": None,
        "phantom_version": PHANTOM_VERSION, "superscan": int(patient.superscan), "study_index": k,
        "collimator": site.collimator, "posterior_mirrored": int(site.posterior_mirrored),
        "findings": ";".join(spec.disease.findings),
    }


# ------------------------------------------------------------------------------------------ the archive

REQUEST_FILE = "phantom_request.json"


def _patient_records(job) -> list[tuple[dict, dict]]:
    """Render and write all studies of one patient; return (manifest row, ground truth) per study."""
    from synthscan.io.dicom import write_scan

    site, seed, index, folder = job
    records = []
    for study in simulate_patient(site, seed, index):
        relative = f"dicom/{study.truth['study_id']}.dcm"
        write_scan(Path(folder) / relative, study.scan, dicom_meta(study))
        records.append((manifest_row(study, relative), study.truth))
    return records


def _request(site: Site, n_patients: int, seed: int) -> dict:
    from synthscan import __version__

    return {"site": site.name, "n_patients": int(n_patients), "seed": int(seed),
            "phantom_version": PHANTOM_VERSION, "synthscan_version": __version__}


def existing_run(out: Path, request: dict) -> bool:
    """True if ``out`` holds a complete run of exactly this request; BadInputError if it holds anything else."""
    from synthscan.errors import BadInputError

    out = Path(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):  # an empty folder is replaced
        return False
    marker = out / REQUEST_FILE
    try:
        previous = json.loads(marker.read_text()) if marker.is_file() else None
    except (OSError, json.JSONDecodeError):
        previous = None
    if previous == request and (out / "manifest.csv").is_file():
        return True
    what = "a phantom run of another request" if previous else "other files"
    raise BadInputError(f"output folder already exists and holds {what}; choose a new --out or remove it", out)


def write_cohort(site: Site, n_patients: int, out, seed: int, workers: int = 1, progress: bool = True) -> dict:
    """Write a site's archive to ``out`` (atomically): ``dicom/<study_id>.dcm``, ``manifest.csv``,
    ``ground_truth.json`` (lesion centres, heart region, findings per study), ``lesions.json`` (metastatic
    lesion centres per study, the format of ``synthscan cam --lesions``) and ``phantom_request.json``.

    Returns a summary; ``summary["existing"]`` is True when ``out`` already held this exact run.
    """
    import multiprocessing

    import pandas as pd
    from tqdm import tqdm

    from synthscan.io.atomic import atomic_dir
    from synthscan.io.manifest import write_manifest

    out = Path(out)
    request = _request(site, n_patients, seed)
    if existing_run(out, request):
        return {"existing": True, "out": str(out), **request}
    rows, truths = [], {}
    with atomic_dir(out) as tmp:
        jobs = [(site, seed, index, str(tmp)) for index in range(n_patients)]
        bar = tqdm(total=n_patients, desc=f"phantom {site.name}", unit="patient", disable=not progress)
        if workers > 1 and n_patients > 1:
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                                  else "spawn")
            with context.Pool(workers) as pool:
                results = pool.imap(_patient_records, jobs, chunksize=max(1, min(8, n_patients // (4 * workers))))
                for records in results:
                    _collect(records, rows, truths)
                    bar.update()
        else:
            for job in jobs:
                _collect(_patient_records(job), rows, truths)
                bar.update()
        bar.close()
        write_manifest(pd.DataFrame(rows), tmp / "manifest.csv")
        (tmp / "ground_truth.json").write_text(json.dumps(truths, indent=1) + "\n")
        lesions = {study: [[lesion["row"], lesion["col"]] for lesion in truth["lesions"]
                           if lesion["kind"] in ("metastasis", "cold")] for study, truth in truths.items()}
        (tmp / "lesions.json").write_text(json.dumps(lesions) + "\n")
        (tmp / REQUEST_FILE).write_text(json.dumps(request, indent=1) + "\n")
    return {"existing": False, "out": str(out), "studies": len(rows), "patients": n_patients,
            "metastasis": sum(r["metastasis"] for r in rows), "amyloid_2plus": sum(r["amyloid_grade"] >= 2 for r in rows),
            **request}


def _collect(records, rows, truths):
    for row, truth in records:
        rows.append(row)
        truths[row["study_id"]] = truth
