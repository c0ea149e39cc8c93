"""The metadata a trained model ships with: what it was trained on and how, its centre,
radius and thresholds, and the software that made it."""

from __future__ import annotations

import datetime as dt
import platform

import numpy as np
import onnxruntime as ort
import torch

from modelfile.metadata import FORMAT_VERSION, InputSpec, ModelMetadata
from training.calibration import DEFAULT_THRESHOLD, TrainingFigures
from training.config import TRANSFORM_SETS
from training.run import Run, Trained


def software_versions() -> dict[str, str]:
    return {
        "deepsvdd-serve": "0.1.0",
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def score_description(transforms: str) -> str:
    if transforms == "identity":
        return "squared distance ||phi(x) - c||^2"
    return (
        f"sum over the {len(TRANSFORM_SETS[transforms])} transformations ({transforms}) of "
        "||phi(T_k x) - c_k||^2: the squared distance of the embedding [phi(T_1 x), ...] to "
        "the centre [c_1, ...]"
    )


def ensemble_record(run: Run, trained: Trained) -> dict[str, object] | None:
    """The members of an ensemble, their seeds and held-out medians; None for one network."""
    if trained.ensemble_medians is None:
        return None
    return {
        "members": len(run.members),
        "kinds": [m.kind for m in run.members],
        "seeds": [m.seed for m in run.members],
        "holdout_medians": trained.ensemble_medians,
        "score": "sum over the members of ||phi_m(x) - c_m||^2 / q_m, q_m the member's median "
        "score on the held-out normal images",
    }


def training_record(
    run: Run, trained: Trained, distributed: dict[str, object]
) -> dict[str, object]:
    """The resolved configuration and the method's choices, as the metadata's `training`,
    with Deep SAD's labelled anomalies, an ensemble's members and `distributed`: the world
    size, backend and how BatchNorm statistics were shared."""
    labelled = None if run.labelled is None else run.labelled.record()
    return {
        **run.cfg.to_dict(),
        "method": "deep-svdd" if labelled is None else "deep-sad",
        "labelled": labelled,
        "net": run.net_cfg.to_dict(),
        "preprocessing": {"gcn": "l1", "min": float(trained.pre.lo), "max": float(trained.pre.hi)},
        "center_eps": 0.1,
        "radius_update": "exact (1-nu) quantile over the training set after every epoch "
        "from warm_up_epochs on (paper: line search every k epochs)",
        "score": score_description(run.cfg.transforms),
        "ensemble_members": ensemble_record(run, trained),
        "seconds_per_epoch": trained.seconds_per_epoch(),
        "distributed": distributed,
    }


def build_metadata(
    run: Run,
    trained: Trained,
    calibration: TrainingFigures,
    version: int,
    distributed: dict[str, object],
) -> ModelMetadata:
    """Everything the service and `deepsvdd inspect` read about a model, `c` and `R` included."""
    cfg, net_cfg = run.cfg, run.net_cfg
    return ModelMetadata(
        format_version=FORMAT_VERSION,
        name=run.name,
        version=version,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        objective=cfg.objective,
        nu=cfg.nu,
        center=[float(v) for v in trained.state.c.cpu()],
        radius=trained.state.R,
        thresholds=calibration.thresholds,
        expected_anomaly_rate=calibration.rates,
        default_threshold=DEFAULT_THRESHOLD[cfg.objective],
        decode=run.spec.decode,
        input=InputSpec(
            channels=net_cfg.channels,  # type: ignore[arg-type]
            height=net_cfg.height,
            width=net_cfg.width,
            color=run.data.color,
        ),
        dataset=run.dataset_info(),
        metrics={
            "auc": calibration.auc,
            "train_fraction_outside": calibration.train_fraction_outside,
            "train_score_std": calibration.train_score_std,
        },
        calibration=calibration.calibration,
        score_reference=calibration.reference,
        training=training_record(run, trained, distributed),
        software=software_versions(),
    )
