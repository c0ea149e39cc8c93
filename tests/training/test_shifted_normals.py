"""Normal test images that pass the thresholds far more often than the held-out ones (taken
elsewhere, in other light, out of focus) are said at the end of training."""

from __future__ import annotations

import numpy as np
import pytest

from training.advice import calibration_warnings
from training.calibration import TrainingFigures, calibrate, with_class_aucs


def _figures(test_normals: np.ndarray) -> TrainingFigures:
    """Figures of a model with 300 held-out normal scores in [0, 1), the test split's
    `test_normals` and as many anomalies scored above every one of them."""
    holdout = np.random.default_rng(0).random(300)
    test = np.r_[test_normals, np.full(len(test_normals), 10.0)]
    classes = np.repeat([0, 1], len(test_normals))
    cal = calibrate(holdout, holdout, test, (classes == 1).astype(int), R=None)
    return with_class_aucs(cal, test, classes, 0, ["good", "hole"])


def test_the_test_normals_false_alarm_rates_are_measured() -> None:
    cal = _figures(np.array([0.1, 0.2, 0.99, 5.0]))
    assert cal.test_normal_n == 4
    assert set(cal.test_normal_rates) == set(cal.thresholds)
    assert cal.test_normal_rates["q0.95"] == pytest.approx(0.5)  # 0.99 and 5.0
    assert cal.test_normal_rates["max"] == pytest.approx(0.25)


def test_normals_like_the_held_out_ones_raise_no_warning() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert calibration_warnings(_figures(rng.random(40)), "q0.95") == []


def test_shifted_normals_are_warned_of_with_their_rate() -> None:
    rng = np.random.default_rng(2)
    shifted = np.r_[0.9 * rng.random(24), 1.0 + rng.random(16)]  # 16 of 40 above them all
    [warning] = calibration_warnings(_figures(shifted), "q0.95")
    assert warning.startswith("16 of the test split's 40 normal images (40%) score above q0.95")
    assert "where 5% of the held-out normal images do" in warning
    # a few more alarms than the hold-out's 5% is within chance at 40 images: no warning
    few = np.r_[0.9 * rng.random(36), 1.0 + rng.random(4)]
    assert calibration_warnings(_figures(few), "q0.95") == []
