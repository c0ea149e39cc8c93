"""Clopper-Pearson intervals computed without scipy agree with scipy's Beta quantiles."""

from __future__ import annotations

import pytest
from scipy.stats import beta

from modelfile.stats import clopper_pearson


def _scipy_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The textbook form: Beta quantiles, as training computed its intervals with scipy."""
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


@pytest.mark.parametrize(("k", "n"), [(0, 40), (2, 40), (20, 40), (40, 40), (5, 1000), (1, 1)])
def test_the_interval_matches_the_beta_quantiles(k: int, n: int) -> None:
    low, high = clopper_pearson(k, n, 0.95)
    expected_low = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
    expected_high = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
    assert low == pytest.approx(expected_low, abs=1e-9)
    assert high == pytest.approx(expected_high, abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 40, 75, 200, 1000])
def test_the_interval_matches_scipy_over_a_grid_of_counts(n: int) -> None:
    # Every count a threshold of a hold-out this size can flag near its ends and middle, at
    # the confidences a calibration may ask for: the intervals training wrote with scipy
    # are those the model file's contract computes now.
    counts = sorted({0, 1, 2, 3, n // 20, n // 10, n // 2, n - 2, n - 1, n} & set(range(n + 1)))
    for k in counts:
        for confidence in (0.9, 0.95, 0.99):
            got = clopper_pearson(k, n, confidence)
            want = _scipy_interval(k, n, confidence)
            assert got == pytest.approx(want, abs=1e-9), (k, n, confidence)


def test_a_rate_from_few_images_is_uncertain() -> None:
    # Issue 17: 2 of 40 held-out images above q0.95 says little about the true rate.
    low, high = clopper_pearson(2, 40)
    assert low < 0.01 and high > 0.16


@pytest.mark.parametrize(("k", "n", "confidence"), [(3, 2, 0.95), (0, 0, 0.95), (1, 4, 1.0)])
def test_impossible_counts_are_refused(k: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        clopper_pearson(k, n, confidence)
