"""The rules of the reproduce report's "paper vs this run" table."""

from types import SimpleNamespace

import pytest

from evaluation.report import _gain_verdict


def _comparison(relative, low, high, p):
    return SimpleNamespace(relative=relative, relative_ci_low=low, relative_ci_high=high, p_value=p)


@pytest.mark.parametrize("comparison, verdict", [
    (_comparison(0.30, 0.20, 0.40, 1e-5), "reproduced (direction, significance and size)"),
    (_comparison(0.10, 0.05, 0.15, 1e-3), "reproduced in direction and significance, not in size"),
    (_comparison(0.30, -0.05, 0.65, 0.2), "not reproduced (positive but not significant)"),
    (_comparison(0.30, 0.01, 0.65, 0.06), "not reproduced (positive but not significant)"),
    (_comparison(-0.10, -0.20, 0.00, 0.01), "not reproduced (no gain)"),
    (None, "not assessable"),
    ("one class only", "not assessable"),
])
def test_gain_verdicts(comparison, verdict):
    assert _gain_verdict(comparison, 33.0) == verdict
