"""Input/output at the boundary: DICOM, de-identification, manifests, atomic writes."""
