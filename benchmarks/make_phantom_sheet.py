"""Contact sheet of the phantom for docs/phantom.png: normal, metastasis (few, many, superscan), amyloidosis
grades 1-3 (DPD), and one scan from every site.

    python benchmarks/make_phantom_sheet.py [--out docs/phantom.png] [--seed 3]
"""

from __future__ import annotations

import argparse


def main(argv=None) -> None:
    from synthscan.phantom.cohort import draw_patient, draw_study, render
    from synthscan.phantom.sites import SITES
    from synthscan.render import contact_sheet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/phantom.png")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    generator = SITES["aurora-dpd"]
    cases = [
        ("normal", dict(metastasis=False, amyloid_grade=0)),
        ("metastasis, 3 lesions", dict(metastasis=True, superscan=False, lesion_count=3, amyloid_grade=0)),
        ("metastasis, 30 lesions", dict(metastasis=True, superscan=False, lesion_count=30, amyloid_grade=0)),
        ("superscan", dict(metastasis=True, superscan=True, amyloid_grade=0)),
        ("amyloid grade 1", dict(metastasis=False, amyloid_grade=1)),
        ("amyloid grade 2", dict(metastasis=False, amyloid_grade=2)),
        ("amyloid grade 3", dict(metastasis=False, amyloid_grade=3)),
    ]
    scans, captions = [], []
    for index, (label, disease) in enumerate(cases):
        study = render(draw_study(draw_patient(generator, args.seed, index, benign=False, **disease)))
        scans.append(study.scan)
        captions.append(f"{label}\n{generator.name} {generator.tracer}")
    for index, site in enumerate(SITES.values()):
        study = render(draw_study(draw_patient(site, args.seed, 100 + index)))
        spec = study.spec
        labels = (f"met {spec.disease.lesion_count}" if spec.patient.metastasis else "no met") + \
            f", amyloid {spec.patient.amyloid_grade}"
        scans.append(study.scan)
        captions.append(f"{site.name} ({site.role})\n{site.tracer} {site.collimator} {site.shape[0]}x{site.shape[1]}, "
                        f"{labels}")
    contact_sheet(scans, captions, out=args.out, columns=7, tile_height=560)
    print(f"wrote {args.out} ({len(scans)} scans)")


if __name__ == "__main__":
    main()
