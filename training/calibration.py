"""What training measures on the held-out normal images and the test split: the thresholds it
ships (through `modelfile.thresholds`, as `deepsvdd calibrate` does), the test AUC
(scikit-learn) and the training scores' spread; no torch, so that evaluation needs none."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from sklearn.metrics import roc_auc_score

from modelfile.metadata import Calibration
from modelfile.reference import reference_sample
from modelfile.thresholds import calibration_of, expected_rates, quantile_thresholds
from training.config import ONE_CLASS, SOFT_BOUNDARY

QUANTILES = (0.9, 0.95, 0.99)
DEFAULT_THRESHOLD = {ONE_CLASS: "q0.95", SOFT_BOUNDARY: "radius"}
# Thresholds should rest on at least this many held-out normal images: with 200, the 95%
# interval of q0.95's false-alarm rate is about 2.4%..9.0%; with 40 it is 0.6%..16.9%.
MIN_HOLDOUT = 200


@dataclass(frozen=True)
class TrainingFigures:
    """The thresholds a model ships with and the figures measured when it was trained."""

    thresholds: dict[str, float]
    rates: dict[str, float]  # threshold name -> share of held-out normal scores above it
    calibration: Calibration  # the hold-out's size and each rate's Clopper-Pearson interval
    auc: float | None  # on the test split; None without one (or with a single label)
    train_fraction_outside: float | None  # soft-boundary: training scores beyond R^2
    train_score_std: float
    reference: list[float]  # sorted held-out normal scores (a bounded sample): drift's baseline
    class_aucs: dict[str, float] = field(default_factory=dict)  # test AUC per anomalous class
    # The test split's own normal images: how many, and the share of them above each
    # threshold (the false-alarm rate the thresholds meet on images that were not held out).
    test_normal_n: int = 0
    test_normal_rates: dict[str, float] = field(default_factory=dict)


def auc_or_none(labels: np.ndarray | None, scores: np.ndarray) -> float | None:
    """ROC AUC with anomalous = 1; None where it is undefined (no labels, or one class only)."""
    if labels is None or len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def auc_by_class(
    scores: np.ndarray, classes: np.ndarray, normal: int, names: Sequence[str]
) -> dict[str, float]:
    """Test AUC of each anomalous class against the normal class's own test images ({} when
    the test split has no normal images): the pooled AUC can hide a class ranked backwards."""
    own = scores[classes == normal]
    if not len(own):
        return {}
    return {
        names[c]: float(
            roc_auc_score(
                np.r_[np.zeros(len(own)), np.ones(np.sum(classes == c))],
                np.r_[own, scores[classes == c]],
            )
        )
        for c in np.unique(classes)
        if c != normal
    }


def with_class_aucs(
    figures: TrainingFigures,
    test: np.ndarray | None,
    classes: np.ndarray | None,
    normal: int,
    names: Sequence[str],
) -> TrainingFigures:
    """`figures` with each anomalous test class's AUC and the thresholds' false-alarm rates on
    the test split's normal images (unchanged without a labelled test split)."""
    if test is None or classes is None:
        return figures
    own = test[classes == normal]
    return replace(
        figures,
        class_aucs=auc_by_class(test, classes, normal, names),
        test_normal_n=len(own),
        test_normal_rates=expected_rates(own, figures.thresholds) if len(own) else {},
    )


def holdout_size(n_normal: int, fraction: float) -> int:
    """Held-out normal images for calibration: `fraction` of them, but at least MIN_HOLDOUT
    while that leaves half for training; always at least one image on each side."""
    wanted = max(round(fraction * n_normal), min(MIN_HOLDOUT, n_normal // 2))
    return max(1, min(n_normal - 1, wanted))


def trained_thresholds(holdout: np.ndarray, R: float | None) -> dict[str, float]:
    """Quantiles (and max) of held-out normal scores; R^2 for soft-boundary."""
    thresholds = quantile_thresholds(holdout, {f"q{q:g}": q for q in QUANTILES})
    thresholds["max"] = float(holdout.max())
    if R is not None:
        thresholds["radius"] = R**2
    return thresholds


def calibrate(
    holdout: np.ndarray,
    train: np.ndarray,
    test: np.ndarray | None,
    test_labels: np.ndarray | None,
    R: float | None,
) -> TrainingFigures:
    """Thresholds from the held-out normal scores, AUC on the test scores, training spread."""
    thresholds = trained_thresholds(holdout, R)
    return TrainingFigures(
        thresholds=thresholds,
        rates=expected_rates(holdout, thresholds),
        calibration=calibration_of(holdout, thresholds, "holdout"),
        auc=None if test is None else auc_or_none(test_labels, test),
        train_fraction_outside=None if R is None else float(np.mean(train > R**2)),
        train_score_std=float(train.std()),
        reference=reference_sample(holdout),
    )
