"""From anomaly scores to thresholds, anomaly rates and AUC; numpy and scikit-learn only,
so that evaluating an exported model needs no torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

QUANTILES = (0.9, 0.95, 0.99)
DEFAULT_THRESHOLD = {"one-class": "q0.95", "soft-boundary": "radius"}


@dataclass(frozen=True)
class Calibration:
    """The thresholds a model ships with and the figures measured when it was trained."""

    thresholds: dict[str, float]
    rates: dict[str, float]  # threshold name -> share of held-out normal scores above it
    auc: float | None  # on the test split; None without one (or with a single label)
    train_fraction_outside: float | None  # soft-boundary: training scores beyond R^2
    train_score_std: float


def auc_or_none(labels: np.ndarray | None, scores: np.ndarray) -> float | None:
    """ROC AUC with anomalous = 1; None where it is undefined (no labels, or one class only)."""
    if labels is None or len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def thresholds_from(
    calibration: np.ndarray, R: float | None
) -> tuple[dict[str, float], dict[str, float]]:
    """Quantiles (and max) of held-out normal scores; R^2 for soft-boundary.

    Returns the thresholds and, for each, the fraction of held-out normal scores above it:
    the anomaly rate that a stream of normal images should show.
    """
    thresholds = {f"q{q:g}": float(np.quantile(calibration, q)) for q in QUANTILES}
    thresholds["max"] = float(calibration.max())
    if R is not None:
        thresholds["radius"] = R**2
    rates = {k: float(np.mean(calibration > v)) for k, v in thresholds.items()}
    return thresholds, rates


def calibrate(
    holdout: np.ndarray,
    train: np.ndarray,
    test: np.ndarray | None,
    test_labels: np.ndarray | None,
    R: float | None,
) -> Calibration:
    """Thresholds from the held-out normal scores, AUC on the test scores, training spread."""
    thresholds, rates = thresholds_from(holdout, R)
    return Calibration(
        thresholds=thresholds,
        rates=rates,
        auc=None if test is None else auc_or_none(test_labels, test),
        train_fraction_outside=None if R is None else float(np.mean(train > R**2)),
        train_score_std=float(train.std()),
    )
