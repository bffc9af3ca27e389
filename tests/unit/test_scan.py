import numpy as np
import pytest

from synthscan.errors import BadInputError
from synthscan.scan import Scan, front_to_posterior, posterior_to_front


def test_scan_validates_and_normalises(rng):
    counts = rng.poisson(3, (2, 8, 4))
    scan = Scan(counts, 2.4)
    assert scan.counts.dtype == np.float32
    assert scan.pixel_spacing_mm == (2.4, 2.4)
    assert scan.shape == (8, 4)
    assert scan.total_counts == counts.sum()
    np.testing.assert_array_equal(scan.view("posterior"), counts[1])


@pytest.mark.parametrize("counts, spacing, views, message", [
    (np.ones(8), 1.0, ("anterior", "posterior"), "shape"),
    (np.ones((3, 8, 4)), 1.0, ("anterior", "posterior"), "view image"),
    (np.full((2, 8, 4), np.nan), 1.0, ("anterior", "posterior"), "NaN"),
    (-np.ones((2, 8, 4)), 1.0, ("anterior", "posterior"), "negative"),
    (np.ones((2, 8, 4)), 0.0, ("anterior", "posterior"), "spacing"),
    (np.ones((2, 8, 4)), (1.0, -2.0), ("anterior", "posterior"), "spacing"),
    (np.ones((2, 8, 4)), 1.0, ("posterior", "anterior"), "views must be"),
])
def test_scan_rejects_bad_input(counts, spacing, views, message):
    with pytest.raises(BadInputError, match=message):
        Scan(counts, spacing, views)


def test_single_view_scan():
    scan = Scan(np.ones((8, 4)), 2.0, ("anterior",))
    assert scan.counts.shape == (1, 8, 4)
    with pytest.raises(KeyError):
        scan.view("posterior")


def test_mirroring_is_an_involution(rng):
    image = rng.random((5, 3))
    assert not np.array_equal(posterior_to_front(image), image)
    np.testing.assert_array_equal(front_to_posterior(posterior_to_front(image)), image)
    np.testing.assert_array_equal(posterior_to_front(image)[:, 0], image[:, -1])
