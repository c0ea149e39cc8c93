"""Clopper-Pearson intervals computed without scipy agree with scipy's Beta quantiles."""

from __future__ import annotations

import pytest
from scipy.stats import beta

from modelfile.stats import clopper_pearson


@pytest.mark.parametrize(("k", "n"), [(0, 40), (2, 40), (20, 40), (40, 40), (5, 1000), (1, 1)])
def test_the_interval_matches_the_beta_quantiles(k: int, n: int) -> None:
    low, high = clopper_pearson(k, n, 0.95)
    expected_low = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
    expected_high = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
    assert low == pytest.approx(expected_low, abs=1e-9)
    assert high == pytest.approx(expected_high, abs=1e-9)


def test_a_rate_from_few_images_is_uncertain() -> None:
    # Issue 17: 2 of 40 held-out images above q0.95 says little about the true rate.
    low, high = clopper_pearson(2, 40)
    assert low < 0.01 and high > 0.16


@pytest.mark.parametrize(("k", "n", "confidence"), [(3, 2, 0.95), (0, 0, 0.95), (1, 4, 1.0)])
def test_impossible_counts_are_refused(k: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        clopper_pearson(k, n, confidence)
