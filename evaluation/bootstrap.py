"""Stratified bootstrap of the AUC, vectorized over resamples.

Each resample draws the m positive and the n negative cases with replacement, separately (the stratified
bootstrap of R's ``pROC::ci.auc(method="bootstrap")``, so every resample has both classes and the same
prevalence). Nothing is re-sorted per resample: the negatives are sorted once, and each positive case i
gets the positions lo_i and hi_i of its score among them (``searchsorted`` left and right). A resample is
then two count vectors, how often each negative and each positive was drawn (one ``bincount`` for a whole
block of resamples), and with C_b the running count of drawn negatives in sorted order (C_b[k] = draws among
the first k), its Mann-Whitney AUC, ties counting one half, is

    AUC_b = sum_i w_bi (C_b[lo_i] + C_b[hi_i]) / (2 m n),      w_bi = draws of positive i.

Cost O(B N) with small constants; memory bounded by the block size.
"""

from __future__ import annotations

import numpy as np

BLOCK_ELEMENTS = 2_000_000  # resamples x cases per block: about 16 MB of int64 per array


def bootstrap_aucs(positive: np.ndarray, scores: np.ndarray, n_resamples: int,
                   rng: np.random.Generator) -> np.ndarray:
    """AUCs of ``n_resamples`` stratified bootstrap resamples (higher score = positive)."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    negatives = np.sort(scores[~positive])
    positives = scores[positive]
    m, n = len(positives), len(negatives)
    lo = np.searchsorted(negatives, positives, side="left")
    hi = np.searchsorted(negatives, positives, side="right")
    block = max(1, BLOCK_ELEMENTS // (m + n))
    aucs = np.empty(n_resamples)
    for start in range(0, n_resamples, block):
        size = min(block, n_resamples - start)
        below = np.zeros((size, n + 1), dtype=np.int64)
        np.cumsum(_draw_counts(n, size, rng), axis=1, out=below[:, 1:])
        weights = _draw_counts(m, size, rng)
        twice = np.einsum("bi,bi->b", weights, below[:, lo] + below[:, hi])
        aucs[start:start + size] = twice / (2.0 * m * n)
    return aucs


def _draw_counts(n_cases: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, n_cases) counts of each case in ``size`` resamples of n_cases draws with replacement."""
    draws = rng.integers(0, n_cases, size=(size, n_cases))
    draws += (np.arange(size) * n_cases)[:, None]
    return np.bincount(draws.ravel(), minlength=size * n_cases).reshape(size, n_cases)
