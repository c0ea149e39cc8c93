"""Thresholds from the scores of normal images, the anomaly rate each should show, and how sure
that rate is: the one code path for the thresholds training ships and `deepsvdd calibrate` adds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelfile.metadata import CONFIDENCE, Calibration, CalibrationMethod
from modelfile.stats import clopper_pearson


def quantile_thresholds(normal: np.ndarray, levels: Mapping[str, float]) -> dict[str, float]:
    """Threshold name -> the `level` quantile of the normal scores (about 1 - level lie above)."""
    return {name: float(np.quantile(normal, level)) for name, level in levels.items()}


def count_above(scores: np.ndarray, threshold: float) -> int:
    """The scores a threshold flags: those above it (a score equal to it is normal)."""
    return int(np.count_nonzero(scores > threshold))


def share_above(scores: np.ndarray, threshold: float) -> float:
    """The fraction of `scores` above `threshold`."""
    return count_above(scores, threshold) / scores.size


def expected_rates(normal: np.ndarray, thresholds: Mapping[str, float]) -> dict[str, float]:
    """Threshold name -> share of the normal scores above it: the anomaly rate that a stream
    of normal images should show (the metadata's `expected_anomaly_rate`)."""
    return {name: share_above(normal, value) for name, value in thresholds.items()}


def calibration_of(
    normal: np.ndarray,
    thresholds: Mapping[str, float],
    method: CalibrationMethod,
    confidence: float = CONFIDENCE,
) -> Calibration:
    """The count of normal images the thresholds rest on, and for each threshold the
    Clopper-Pearson interval of its false-alarm rate, k of n normal scores above it."""
    n = int(normal.size)
    return Calibration(
        n=n,
        method=method,
        confidence=confidence,
        rate_interval={
            name: list(clopper_pearson(count_above(normal, value), n, confidence))
            for name, value in thresholds.items()
        },
    )
