"""Thresholds from normal scores: quantiles, the rates they flag, and the calibration record."""

from __future__ import annotations

import numpy as np
import pytest

from modelfile.metadata import CONFIDENCE
from modelfile.stats import clopper_pearson
from modelfile.thresholds import (
    calibration_of,
    count_above,
    expected_rates,
    quantile_thresholds,
    share_above,
)


def test_quantile_thresholds_are_numpy_quantiles_by_name() -> None:
    normal = np.arange(1, 101, dtype=np.float64)
    thresholds = quantile_thresholds(normal, {"q0.9": 0.9, "q0.5": 0.5})
    assert thresholds == {"q0.9": np.quantile(normal, 0.9), "q0.5": np.quantile(normal, 0.5)}
    assert all(type(v) is float for v in thresholds.values())


def test_a_score_equal_to_the_threshold_is_not_flagged() -> None:
    scores = np.array([1.0, 2.0, 2.0, 3.0])
    assert count_above(scores, 2.0) == 1
    assert share_above(scores, 2.0) == 0.25
    assert share_above(scores, 0.0) == 1.0 and share_above(scores, 3.0) == 0.0


def test_expected_rates_are_the_shares_above_each_threshold() -> None:
    normal = np.arange(1, 1001, dtype=np.float64)
    thresholds = quantile_thresholds(normal, {"q0.95": 0.95}) | {"max": float(normal.max())}
    rates = expected_rates(normal, thresholds)
    assert rates == {"q0.95": 0.05, "max": 0.0}
    assert rates["q0.95"] == float(np.mean(normal > thresholds["q0.95"]))


def test_the_calibration_record_gives_each_threshold_its_interval() -> None:
    # Issue 17's example: 40 held-out images, 2 above q0.95.
    normal = np.arange(1, 41, dtype=np.float64)
    record = calibration_of(normal, {"q0.95": 38.0, "max": 40.0}, "holdout")
    assert (record.n, record.method, record.folds) == (40, "holdout", None)
    assert record.confidence == CONFIDENCE
    assert record.rate_interval == {
        "q0.95": list(clopper_pearson(2, 40)),
        "max": list(clopper_pearson(0, 40)),
    }
    low, high = record.rate_interval["q0.95"]
    assert round(low, 4) == 0.0061 and round(high, 4) == 0.1692


def test_the_record_takes_another_confidence() -> None:
    normal = np.linspace(0.0, 1.0, 200)
    record = calibration_of(normal, {"t": 0.5}, "calibrate", confidence=0.9)
    assert record.confidence == 0.9 and record.method == "calibrate"
    k = count_above(normal, 0.5)
    assert record.rate_interval["t"] == pytest.approx(list(clopper_pearson(k, 200, 0.9)))
