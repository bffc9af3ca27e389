"""DeLong's nonparametric AUC covariance by the fast midrank algorithm.

DeLong, DeLong & Clarke-Pearson, "Comparing the areas under two or more correlated receiver operating
characteristic curves: a nonparametric approach", Biometrics 44:837 (1988): the AUC is a two-sample
U-statistic whose variance follows from its structural components V10 (one per positive case) and V01 (one
per negative case). Sun & Xu, "Fast implementation of DeLong's algorithm for comparing the areas under
correlated receiver operating characteristic curves", IEEE Signal Processing Letters 21:1389 (2014), obtain
those components from three midrank computations, O(N log N) instead of O(m n):

    V10_i = (Tz_i - Tx_i) / n,      V01_j = 1 - (Tz_{m+j} - Ty_j) / m,
    AUC = mean(V10),   S = cov(V10) / m + cov(V01) / n   (covariances with m - 1 and n - 1 denominators),

where Tx, Ty and Tz are midranks of a score within the positives, the negatives, and both together. Ties
count one half, as in the Mann-Whitney statistic; this is the variance of R's ``pROC::var(method="delong")``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from synthscan.errors import BadInputError


def delong_covariance(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for k score vectors on the same cases.

    ``positive`` is a boolean vector of N cases; ``scores`` is (k, N) or (N,). Higher scores mean positive.
    Returns ``(aucs (k,), covariance (k, k))``.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positive = np.asarray(positive, dtype=bool)
    x, y = scores[:, positive], scores[:, ~positive]
    m, n = x.shape[1], y.shape[1]
    if m < 2 or n < 2:
        raise BadInputError(f"the DeLong variance needs at least 2 positive and 2 negative cases "
                            f"(have {m} positive, {n} negative)")
    tx = rankdata(x, axis=1)
    ty = rankdata(y, axis=1)
    tz = rankdata(np.concatenate([x, y], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    aucs = v10.mean(axis=1)
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance
