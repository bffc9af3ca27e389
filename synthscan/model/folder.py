"""A model folder without torch: its config (checked to be a synthscan model) and its hash.

Kept apart from synthscan/model/pipeline.py so that a process which only checks a model and coordinates
others (``synthscan sample`` with worker processes) need not import torch and diffusers (about 0.5 GB).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from synthscan.errors import BadInputError

FORMAT = "synthscan-model/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def read_model_config(folder) -> dict:
    """config.json of a model folder, checked to be a synthscan model with weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError("model folder not found", folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise BadInputError(f"not a synthscan model folder (needs {CONFIG} and {WEIGHTS})", folder)
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInputError(f"{CONFIG} is not valid JSON ({error})", folder) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise BadInputError(f"{CONFIG} is not a synthscan model config (format {FORMAT!r} expected)", folder)
    return config


def file_hash(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
