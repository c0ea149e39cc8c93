"""The metadata a trained model ships with: what it was trained on and how, its centre,
radius and thresholds, and the software that made it."""

from __future__ import annotations

import datetime as dt
import platform

import numpy as np
import onnxruntime as ort
import torch

from modelfile.imaging import Color
from modelfile.metadata import FORMAT_VERSION, DatasetInfo, InputSpec, ModelMetadata
from training.calibration import DEFAULT_THRESHOLD, TrainingFigures
from training.config import TRANSFORM_SETS, TrainConfig
from training.deepsvdd import TrainState
from training.networks import NetConfig
from training.preprocess import Preprocess


def software_versions() -> dict[str, str]:
    return {
        "deepsvdd-serve": "0.1.0",
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def seconds_per_epoch(state: TrainState, pretrain: float | None) -> dict[str, float | None]:
    """Mean seconds per epoch of each phase; pretrain is None when it did not run."""
    return {"pretrain": pretrain, **state.seconds_per_epoch}


def score_description(transforms: str) -> str:
    if transforms == "identity":
        return "squared distance ||phi(x) - c||^2"
    return (
        f"sum over the {len(TRANSFORM_SETS[transforms])} transformations ({transforms}) of "
        "||phi(T_k x) - c_k||^2: the squared distance of the embedding [phi(T_1 x), ...] to "
        "the centre [c_1, ...]"
    )


def training_record(
    cfg: TrainConfig,
    net_cfg: NetConfig,
    pre: Preprocess,
    epochs: dict[str, float | None],
    labelled: dict[str, object] | None = None,
    distributed: dict[str, object] | None = None,
    ensemble: dict[str, object] | None = None,
) -> dict[str, object]:
    """The resolved configuration and the method's choices, as the metadata's `training`;
    `labelled`: Deep SAD's labelled anomalies; `distributed`: world size, backend and how
    BatchNorm statistics were shared."""
    return {
        **cfg.to_dict(),
        "method": "deep-svdd" if labelled is None else "deep-sad",
        "labelled": labelled,
        "net": net_cfg.to_dict(),
        "preprocessing": {"gcn": "l1", "min": float(pre.lo), "max": float(pre.hi)},
        "center_eps": 0.1,
        "radius_update": "exact (1-nu) quantile over the training set after every epoch "
        "from warm_up_epochs on (paper: line search every k epochs)",
        "score": score_description(cfg.transforms),
        "ensemble_members": ensemble,
        "seconds_per_epoch": epochs,
        "distributed": distributed or {"world_size": 1, "backend": None, "batchnorm": "local"},
    }


def build_metadata(
    *,
    name: str,
    version: int,
    cfg: TrainConfig,
    net_cfg: NetConfig,
    state: TrainState,
    pre: Preprocess,
    color: Color,
    dataset: DatasetInfo,
    calibration: TrainingFigures,
    pretrain_seconds_per_epoch: float | None,
    labelled: dict[str, object] | None = None,
    distributed: dict[str, object] | None = None,
    ensemble: dict[str, object] | None = None,
) -> ModelMetadata:
    """Everything the service and `deepsvdd inspect` read about a model, `c` and `R` included."""
    return ModelMetadata(
        format_version=FORMAT_VERSION,
        name=name,
        version=version,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        objective=cfg.objective,
        nu=cfg.nu,
        center=[float(v) for v in state.c.cpu()],
        radius=state.R,
        thresholds=calibration.thresholds,
        expected_anomaly_rate=calibration.rates,
        default_threshold=DEFAULT_THRESHOLD[cfg.objective],
        input=InputSpec(
            channels=net_cfg.channels,  # type: ignore[arg-type]
            height=net_cfg.height,
            width=net_cfg.width,
            color=color,
        ),
        dataset=dataset,
        metrics={
            "auc": calibration.auc,
            "train_fraction_outside": calibration.train_fraction_outside,
            "train_score_std": calibration.train_score_std,
        },
        calibration=calibration.calibration,
        training=training_record(
            cfg,
            net_cfg,
            pre,
            seconds_per_epoch(state, pretrain_seconds_per_epoch),
            labelled,
            distributed,
            ensemble,
        ),
        software=software_versions(),
    )
