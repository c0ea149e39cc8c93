"""Training's thresholds, rates and intervals come from the model file's contract
(`modelfile.thresholds`), the code `deepsvdd calibrate` uses: the same scores give the same
threshold and interval in both."""

from __future__ import annotations

import numpy as np
import pytest

from modelfile.stats import clopper_pearson
from service.offline.calibrate import QUANTILE, user_thresholds
from training.calibration import calibrate


def test_training_and_calibrate_agree_on_the_same_scores() -> None:
    rng = np.random.default_rng(0)
    holdout = rng.gamma(2.0, 1.0, 600)
    trained = calibrate(holdout, holdout, None, None, R=None)
    chosen = user_thresholds(holdout, np.array([]), target_rate=0.05)
    (choice,) = chosen.choices
    assert choice.value == pytest.approx(trained.thresholds["q0.95"], abs=1e-12)
    assert choice.normal_flagged == trained.rates["q0.95"]
    assert chosen.calibration.rate_interval[QUANTILE] == trained.calibration.rate_interval["q0.95"]
    assert (trained.calibration.n, trained.calibration.method) == (600, "holdout")


def test_training_intervals_are_the_clopper_pearson_of_the_counts_above() -> None:
    holdout = np.arange(1, 41, dtype=np.float64)
    trained = calibrate(holdout, holdout, None, None, R=1.5)
    for name, value in trained.thresholds.items():
        k = int(np.sum(holdout > value))
        assert trained.rates[name] == k / 40
        assert trained.calibration.rate_interval[name] == list(clopper_pearson(k, 40))
    assert trained.thresholds["radius"] == 2.25
    assert trained.train_fraction_outside == pytest.approx(38 / 40)  # 3..40 beyond R^2
