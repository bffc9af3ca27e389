"""Seeded physics-based phantom cohort simulator: stand-in hospitals for synthscan (DESIGN.md section 2).

anatomy (skeleton, organs, soft tissue) -> disease (metastases, amyloidosis, benign findings, survival)
-> acquisition (attenuation, depth-dependent collimator blur, scatter, non-uniformity, Poisson counts)
-> cohort (patients, studies, identities, the archive on disk); sites holds the named hospitals.
"""

PHANTOM_VERSION = "1.0"  # bump when the same seed would give different scans
