"""Shallow baselines of paper section 4.1: OC-SVM, KDE and Isolation Forest on PCA features.

Evaluation split: a seeded, stratified 10% of the test set is a labelled hold-out on which
the OC-SVM picks (gamma, nu), as in the paper. Every method's AUC is then measured on the
remaining 90% only, so that the numbers of all methods share one split and none is scored
on the points that chose its hyper-parameters. The split is made whatever methods are
asked for, so a method's AUC does not depend on which others run with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.neighbors import KernelDensity
from sklearn.svm import OneClassSVM

from training.data import DataError, load_dataset, resolve_class
from training.data.download import download_missing
from training.preprocess import apply, fit_preprocess
from training.run import split_normal

METHODS = ("ocsvm", "kde", "iforest")
PCA_VARIANCE = 0.95
HOLDOUT_FRACTION = 0.1
OCSVM_GAMMAS = tuple(2.0**k for k in range(-10, 0))  # 2^-10 .. 2^-1
OCSVM_NUS = (0.01, 0.1)
KDE_BANDWIDTHS = tuple(2.0 ** (k / 2) for k in range(1, 11))  # 2^0.5, 2^1, .. 2^5
KDE_FOLDS = 5
IFOREST_TREES = 100
IFOREST_SUBSAMPLE = 256
# In hundreds of PCA dimensions the tree prunes almost nothing; big leaves cut its overhead
# and leave the densities exact (timings: bench/README.md, Table 1).
KDE_LEAF_SIZE = 200


def run_baselines(
    x_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
) -> dict[str, float]:
    """AUCs of the shallow baselines, with anomalies (y_test == 1) as the positive class.

    x_train (N, D): normal training data, already preprocessed and flattened; x_test (M, D)
    and y_test (M,) with 0 normal, 1 anomalous. Returns the AUC of each method in `methods`
    under its name, measured on the 90% of the test set outside the hold-out, and alongside:
    "eval_size" (how many test points that is), "pca_components", and the choices
    "ocsvm_gamma", "ocsvm_nu" (with "ocsvm_holdout_auc", the AUC that chose them) and
    "kde_bandwidth".
    """
    _check_inputs(x_train, x_test, y_test, methods)
    train = x_train.astype(np.float64)
    pca = PCA(n_components=PCA_VARIANCE, svd_solver="full").fit(train)
    z_train = pca.transform(train)
    z_test = pca.transform(x_test.astype(np.float64))
    z_hold, z_eval, y_hold, y_eval = split_holdout(z_test, y_test.astype(np.int64), seed)

    result = {"pca_components": float(pca.n_components_), "eval_size": float(len(y_eval))}
    if "ocsvm" in methods:
        model, hold_auc = _select_ocsvm(z_train, z_hold, y_hold)
        result["ocsvm"] = _auc(y_eval, -model.decision_function(z_eval))
        result["ocsvm_gamma"], result["ocsvm_nu"] = float(model.gamma), float(model.nu)
        result["ocsvm_holdout_auc"] = hold_auc
    if "kde" in methods:
        kde = select_kde(z_train, seed)
        result["kde"] = _auc(y_eval, -kde.score_samples(z_eval))
        result["kde_bandwidth"] = float(kde.bandwidth)
    if "iforest" in methods:
        forest = IsolationForest(
            n_estimators=IFOREST_TREES,
            max_samples=min(IFOREST_SUBSAMPLE, len(z_train)),
            random_state=seed,
        ).fit(z_train)
        result["iforest"] = _auc(y_eval, -forest.score_samples(z_eval))
    return result


def run_for_dataset(
    dataset: str,
    normal_class: str,
    data_dir: Path | None = None,
    *,
    download: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """What `deepsvdd baselines` runs: the normal class's training images, preprocessed as
    Deep SVDD's are, against the whole test split; the AUCs of `run_baselines` and their
    choices, with the dataset and the class index."""
    if download:
        download_missing(dataset, data_dir)
    data = load_dataset(dataset, data_dir, image_size=image_size, channels=channels, seed=seed)
    k = resolve_class(data, normal_class)
    split = split_normal(data, k, 0.1, seed)
    if split.test is None or split.test_labels is None:
        raise DataError(f"dataset {dataset!r} has no test split")
    pre = fit_preprocess(split.train)
    x_train = apply(pre, split.train).flatten(1).numpy()
    x_test = apply(pre, split.test).flatten(1).numpy()
    result = run_baselines(x_train, x_test, split.test_labels, seed=seed)
    return {"dataset": dataset, "normal_class": k, **result}


def _check_inputs(
    x_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, methods: Sequence[str]
) -> None:
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ValueError(f"methods {list(methods)!r} must be a non-empty subset of {METHODS}")
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"{name} must be a 2-D array (N, D) with D > 0, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    if len(x_train) < KDE_FOLDS:
        raise ValueError(
            f"x_train has {len(x_train)} rows; at least {KDE_FOLDS} are needed "
            f"(PCA and {KDE_FOLDS}-fold cross-validation)"
        )
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(
            f"x_test has {x_test.shape[1]} features per row but x_train has {x_train.shape[1]}"
        )
    if y_test.shape != (len(x_test),):
        raise ValueError(f"y_test must have shape ({len(x_test)},), got {y_test.shape}")
    values = set(np.unique(y_test).tolist())
    if values != {0, 1}:
        raise ValueError(
            f"y_test must contain both 0 (normal) and 1 (anomalous) and nothing else, "
            f"got values {sorted(values)}"
        )


def split_holdout(
    z_test: np.ndarray, y_test: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified and seeded: (hold-out x, evaluation x, hold-out y, evaluation y)."""
    n_hold = int(np.ceil(HOLDOUT_FRACTION * len(y_test)))
    if np.bincount(y_test).min() >= 2 and 2 <= n_hold <= len(y_test) - 2:
        z_eval, z_hold, y_eval, y_hold = train_test_split(
            z_test, y_test, test_size=n_hold, stratify=y_test, random_state=seed
        )
        if len(np.unique(y_hold)) == 2 and len(np.unique(y_eval)) == 2:
            return z_hold, z_eval, y_hold, y_eval
    counts = np.bincount(y_test)
    raise ValueError(
        f"y_test has {counts[0]} normal and {counts[1]} anomalous points: too few to keep "
        f"both classes in the {HOLDOUT_FRACTION:.0%} hold-out and in the evaluation part"
    )


def _select_ocsvm(
    z_train: np.ndarray, z_hold: np.ndarray, y_hold: np.ndarray
) -> tuple[OneClassSVM, float]:
    """Fits every (nu, gamma) of the grid on all training data; returns the one with the best
    hold-out AUC (refitted, a single cheap fit, rather than keeping 20 models alive) and that AUC.

    The full grid (20 fits) takes seconds on Fashion-MNIST (6000 x 259 after PCA), so no
    subsampling is needed for the selection.
    """
    grid = [(nu, gamma) for nu in OCSVM_NUS for gamma in OCSVM_GAMMAS]
    models = (ocsvm(nu, gamma).fit(z_train) for nu, gamma in grid)
    aucs = [_auc(y_hold, -model.decision_function(z_hold)) for model in models]
    best = int(np.argmax(aucs))  # the first of equal AUCs: smaller nu, then smaller gamma
    return ocsvm(*grid[best]).fit(z_train), aucs[best]


def ocsvm(nu: float, gamma: float) -> OneClassSVM:
    """An RBF one-class SVM with hyper-parameters `nu` and `gamma`, as the baselines fit it."""
    return OneClassSVM(kernel="rbf", nu=nu, gamma=gamma, cache_size=1000)


def select_kde(z_train: np.ndarray, seed: int) -> KernelDensity:
    """Bandwidth by 5-fold cross-validated log-likelihood (folds shuffled with `seed`)."""
    search = GridSearchCV(
        KernelDensity(kernel="gaussian", leaf_size=KDE_LEAF_SIZE),
        {"bandwidth": list(KDE_BANDWIDTHS)},
        cv=KFold(n_splits=KDE_FOLDS, shuffle=True, random_state=seed),
    ).fit(z_train)
    best: KernelDensity = search.best_estimator_
    return best


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))
