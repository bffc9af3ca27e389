"""Small CSV tables written or edited by people (manifests, labels, pairings, predictions, reader responses).

One reader so that every such file fails the same way: a missing file or a file pandas cannot parse is a
``BadInputError`` naming the file. pandas' parser messages quote the offending line; for files that may hold
identifiers (labels and pairing files given to ``ingest``) pass ``quote_error=False`` and only the kind of
error is reported, so no cell of the file can reach a log.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from synthscan.errors import BadInputError

READ_ERRORS = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError)


def read_csv_table(path, what: str, *, quote_error: bool = True, blank_is_missing: bool = True,
                   dtype=str) -> pd.DataFrame:
    """Read ``path`` as text columns (``dtype``); blank cells become missing unless ``blank_is_missing=False``."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} not found", path)
    try:
        return pd.read_csv(path, dtype=dtype, keep_default_na=False, na_values=[""] if blank_is_missing else [])
    except READ_ERRORS as error:
        detail = str(error) if quote_error else type(error).__name__
        raise BadInputError(f"not a readable CSV {what} ({detail})", path) from None
