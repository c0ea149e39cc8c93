"""Threshold choice from scores: the quantile, the F1-best and the Youden-best thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from service.offline.calibrate import F1, QUANTILE, YOUDEN, choose


def test_normal_only_gives_the_quantile_that_flags_the_target_rate() -> None:
    normal = np.arange(1, 1001, dtype=np.float64)
    (choice,) = choose(normal, np.array([]), 0.05)
    assert choice.name == QUANTILE
    assert choice.value == pytest.approx(np.quantile(normal, 0.95))
    assert choice.normal_flagged == pytest.approx(0.05, abs=0.002)
    assert choice.precision is None and choice.recall is None


def test_separable_anomalies_get_a_perfect_f1_and_youden_threshold() -> None:
    normal, anomalies = np.linspace(0, 1, 200), np.linspace(2, 3, 50)
    by_name = {c.name: c for c in choose(normal, anomalies, 0.1)}
    for name in (F1, YOUDEN):
        assert 1.0 <= by_name[name].value < 2.0
        assert (by_name[name].precision, by_name[name].recall) == (1.0, 1.0)
        assert by_name[name].normal_flagged == 0.0
    quantile = by_name[QUANTILE]
    assert quantile.recall == 1.0 and quantile.precision == pytest.approx(50 / 70, abs=0.01)


def test_overlapping_scores_trade_precision_for_recall() -> None:
    rng = np.random.default_rng(0)
    normal, anomalies = rng.normal(0, 1, 2000) ** 2, rng.normal(1.5, 1, 500) ** 2
    by_name = {c.name: c for c in choose(normal, anomalies, 0.05)}
    f1 = by_name[F1]
    assert f1.precision is not None and f1.recall is not None
    best = 2 * f1.precision * f1.recall / (f1.precision + f1.recall)
    for t in np.quantile(np.concatenate([normal, anomalies]), np.linspace(0, 1, 101)):
        tp, fp = np.sum(anomalies > t), np.sum(normal > t)
        assert 2 * tp / (2 * tp + fp + (500 - tp)) <= best + 1e-12
    youden = by_name[YOUDEN]
    assert youden.recall is not None
    j = youden.recall - youden.normal_flagged
    for t in np.linspace(0, 20, 200):
        assert np.mean(anomalies > t) - np.mean(normal > t) <= j + 1e-12


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1])
def test_a_rate_outside_zero_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="target rate"):
        choose(np.ones(10), np.array([]), rate)


def test_no_normal_score_is_refused() -> None:
    with pytest.raises(ValueError, match="no normal image"):
        choose(np.array([]), np.ones(3), 0.05)
