"""Ingest speed: studies per second through ``synthscan ingest`` (goal >= 100 studies/s, issue 3).

Builds an archive of clinical-size studies (2 x 1024 x 256 counts; half stored as one NM multi-frame file,
half as one file per view) with identifiers and labels, then times ingest end to end (walk, header read,
grouping, labels, pixel read, de-identification, canonical NM write, manifest) into a fresh folder.

    python benchmarks/ingest_speed.py --studies 300
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from synthscan.ingest import ingest
from synthscan.io.dicom import write_scan
from synthscan.scan import Scan


def _cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes (less sensitive to a shared machine)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def build_archive(folder: Path, n_studies: int, rows: int, cols: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    labels = ["study_instance_uid,metastasis,amyloid_grade"]
    base = rng.poisson(3.0, (2, rows, cols)).astype(np.float32)
    for index in range(n_studies):
        uid = f"1.3.6.1.4.1.99999.9.{index}"
        counts = base + rng.integers(0, 2, base.shape)
        meta = {"patient_name": f"Patient{index}^Anna", "patient_id": f"MRN{index // 2:06d}",
                "study_instance_uid": uid, "study_date": "20230314", "study_time": "100000", "tracer": "DPD",
                "activity_mbq": 700, "uptake_minutes": 180, "patient_age_years": 70, "patient_sex": "F",
                "accession_number": f"ACC{index}", "institution_name": "St Mary Hospital"}
        folder_of_study = folder / f"{index // 100:03d}"
        if index % 2:
            write_scan(folder_of_study / f"{index}.dcm", Scan(counts, (2.4, 2.4)), meta)
        else:
            for view_index, view in enumerate(("anterior", "posterior")):
                single = Scan(counts[view_index][None], (2.4, 2.4), (view,))
                write_scan(folder_of_study / f"{index}_{view[:3]}.dcm", single, meta)
        labels.append(f"{uid},{index % 2},0")
    (folder.parent / "labels.csv").write_text("\n".join(labels) + "\n")
    return folder.parent / "labels.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--cols", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, help="worker processes (default: CPU count, at most 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "archive"
        labels = build_archive(source / "dicom", args.studies, args.rows, args.cols, args.seed)
        start, cpu = time.perf_counter(), _cpu_seconds()
        result = ingest(source / "dicom", Path(tmp) / "out", labels=labels, progress=False, workers=args.workers)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        start = time.perf_counter()
        ingest(source / "dicom", Path(tmp) / "out", labels=labels, progress=False, workers=args.workers)
        rerun = time.perf_counter() - start
    print(f"ingest: {result.n_studies} studies of 2x{args.rows}x{args.cols} in {seconds:.2f} s = "
          f"{result.n_studies / seconds:.0f} studies/s (rerun, nothing new: {result.n_studies / rerun:.0f} "
          f"studies/s); CPU {1000 * cpu / result.n_studies:.1f} ms per study (= {result.n_studies / cpu:.0f} "
          f"studies/s per busy core); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"{platform.machine()}, python {platform.python_version()}")


if __name__ == "__main__":
    main()
