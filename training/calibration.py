"""From anomaly scores to thresholds, anomaly rates and AUC; numpy and scikit-learn only,
so that evaluating an exported model needs no torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta
from sklearn.metrics import roc_auc_score

from training.config import ONE_CLASS, SOFT_BOUNDARY

QUANTILES = (0.9, 0.95, 0.99)
DEFAULT_THRESHOLD = {ONE_CLASS: "q0.95", SOFT_BOUNDARY: "radius"}
# Thresholds should rest on at least this many held-out normal images: with 200, the 95%
# interval of q0.95's false-alarm rate is about 2.4%..9.0%; with 40 it is 0.6%..16.9%.
MIN_HOLDOUT = 200
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Calibration:
    """The thresholds a model ships with and the figures measured when it was trained."""

    thresholds: dict[str, float]
    rates: dict[str, float]  # threshold name -> share of held-out normal scores above it
    auc: float | None  # on the test split; None without one (or with a single label)
    train_fraction_outside: float | None  # soft-boundary: training scores beyond R^2
    train_score_std: float
    n_holdout: int  # held-out normal images the thresholds and rates rest on
    rate_interval: dict[str, list[float]]  # threshold name -> Clopper-Pearson [low, high]


def auc_or_none(labels: np.ndarray | None, scores: np.ndarray) -> float | None:
    """ROC AUC with anomalous = 1; None where it is undefined (no labels, or one class only)."""
    if labels is None or len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def holdout_size(n_normal: int, fraction: float) -> int:
    """Held-out normal images for calibration: `fraction` of them, but at least MIN_HOLDOUT
    while that leaves half for training; always at least one image on each side."""
    wanted = max(round(fraction * n_normal), min(MIN_HOLDOUT, n_normal // 2))
    return max(1, min(n_normal - 1, wanted))


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """Exact binomial interval of a rate seen as k of n: [low, high] at `confidence`."""
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return [low, high]


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
    n = len(holdout)
    intervals = {
        name: clopper_pearson(int(np.sum(holdout > value)), n) for name, value in thresholds.items()
    }
    return Calibration(
        thresholds=thresholds,
        rates=rates,
        auc=None if test is None else auc_or_none(test_labels, test),
        train_fraction_outside=None if R is None else float(np.mean(train > R**2)),
        train_score_std=float(train.std()),
        n_holdout=n,
        rate_interval=intervals,
    )
