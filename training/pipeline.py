"""From a dataset and a normal class to an exported model: the steps `deepsvdd train` runs."""

from __future__ import annotations

import datetime as dt
import platform
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from sklearn.metrics import roc_auc_score

from modelfile.layout import claim_version
from modelfile.metadata import FORMAT_VERSION, DatasetInfo, InputSpec, ModelMetadata
from training import preprocess
from training.checkpoint import Checkpointer
from training.data import ImageSet, load_dataset, resolve_class
from training.data.download import download_missing
from training.deepsvdd import TrainConfig, TrainState, pretrain_dcae, score, train_deepsvdd
from training.export import ScoringModel, export_model
from training.networks import Encoder, NetConfig, make_config

QUANTILES = (0.9, 0.95, 0.99)
DEFAULT_THRESHOLD = {"one-class": "q0.95", "soft-boundary": "radius"}
DEFAULT_ARCH = {"mnist": "mnist", "fashion-mnist": "mnist", "cifar10": "cifar10", "gtsrb": "gtsrb"}


@dataclass
class RunSpec:
    """What to train on and where the model goes (the non-hyper-parameter arguments)."""

    dataset: str
    normal_class: str
    data_dir: Path | None = None
    download: bool = False
    image_size: int | None = None
    channels: int | None = None
    arch: str | None = None
    leaky_slope: float = 0.1
    name: str | None = None
    models_dir: Path = Path("models")
    holdout: float = 0.1
    resume: bool = False
    checkpoint_every: int = 10
    progress: bool = True


@dataclass
class Split:
    """The normal class's training images, split into training and calibration hold-out."""

    train: np.ndarray
    holdout: np.ndarray
    test: np.ndarray | None
    test_labels: np.ndarray | None  # 0 normal, 1 anomalous


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but PyTorch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return device


def split_normal(data: ImageSet, k: int, holdout: float, seed: int) -> Split:
    normal = data.x_train[data.y_train == k]
    if len(normal) < 2:
        raise ValueError(
            f"normal class {data.class_names[k]!r} has {len(normal)} training image(s)"
        )
    order = np.random.default_rng(seed).permutation(len(normal))
    n_hold = min(len(normal) - 1, round(holdout * len(normal)))
    labels = None if data.y_test is None else (data.y_test != k).astype(np.int64)
    return Split(normal[order[n_hold:]], normal[order[:n_hold]], data.x_test, labels)


def auc_or_none(labels: np.ndarray | None, scores: np.ndarray) -> float | None:
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


def default_name(dataset: str, class_name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", f"{dataset}-{class_name}".lower()).strip("-._")[:64]


def software_versions() -> dict[str, str]:
    return {
        "deepsvdd-serve": "0.1.0",
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def net_config_for(spec: RunSpec, data: ImageSet) -> NetConfig:
    _, h, w, ch = data.x_train.shape
    arch = spec.arch or DEFAULT_ARCH.get(spec.dataset, "mnist" if ch == 1 else "cifar10")
    return make_config(arch, ch, h, w, spec.leaky_slope)


def fit(
    net_cfg: NetConfig, x: torch.Tensor, cfg: TrainConfig, ckpt: Checkpointer | None, progress: bool
) -> tuple[TrainState, float | None]:
    """Pretrains (unless off, or a resumed run is past it), then trains Deep SVDD."""
    seed_everything(cfg.seed)
    net = Encoder(net_cfg).to(x.device)
    pre_seconds = None
    skip_pretrain = ckpt is not None and ckpt.phase == "train"
    if cfg.pretrain and not skip_pretrain:
        encoder, _, pre_seconds = pretrain_dcae(net_cfg, x, cfg, ckpt, progress)
        net.load_state_dict(encoder.state_dict())  # weights and BN buffers
    state = train_deepsvdd(net, x, cfg, ckpt, progress)
    return state, pre_seconds


def train_and_export(spec: RunSpec, cfg: TrainConfig) -> dict[str, Any]:
    """Loads data, trains, calibrates thresholds, evaluates and exports; returns the summary."""
    started = time.perf_counter()
    cfg.device = resolve_device(cfg.device)
    if spec.download:
        download_missing(spec.dataset, spec.data_dir)
    data = load_dataset(
        spec.dataset,
        spec.data_dir,
        image_size=spec.image_size,
        channels=spec.channels,
        seed=cfg.seed,
    )
    k = resolve_class(data, spec.normal_class)
    class_name = data.class_names[k]
    name = spec.name or default_name(spec.dataset, class_name)
    net_cfg = net_config_for(spec, data)
    split = split_normal(data, k, spec.holdout, cfg.seed)

    pre = preprocess.fit_preprocess(split.train)
    x = preprocess.apply(pre, split.train).to(cfg.device)
    key = {"dataset": spec.dataset, "class": k, "net": net_cfg.to_dict(), "cfg": cfg.to_dict()}
    ckpt = Checkpointer(
        spec.models_dir / name / ".checkpoint" / "train.pt",
        key,
        every=spec.checkpoint_every,
        resume=spec.resume,
    )
    train_started = time.perf_counter()
    state, pretrain_spe = fit(net_cfg, x, cfg, ckpt, spec.progress)
    train_seconds = time.perf_counter() - train_started

    net = state.net.cpu()
    c = state.c.cpu()
    calib = score(net, c, preprocess.apply(pre, split.holdout)).numpy()
    thresholds, rates = thresholds_from(calib, state.R)
    test_auc = None
    if split.test is not None:
        test_scores = score(net, c, preprocess.apply(pre, split.test)).numpy()
        test_auc = auc_or_none(split.test_labels, test_scores)
    train_scores = score(net, c, x.cpu()).numpy()

    version, version_dir = claim_version(spec.models_dir / name)
    meta = ModelMetadata(
        format_version=FORMAT_VERSION,
        name=name,
        version=version,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        objective=cfg.objective,
        nu=cfg.nu,
        center=[float(v) for v in c],
        radius=state.R,
        thresholds=thresholds,
        expected_anomaly_rate=rates,
        default_threshold=DEFAULT_THRESHOLD[cfg.objective],
        input=InputSpec(
            channels=net_cfg.channels,  # type: ignore[arg-type]
            height=net_cfg.height,
            width=net_cfg.width,
            color=data.color,
        ),
        dataset=DatasetInfo(
            name=spec.dataset,
            normal_class=k,
            class_name=class_name,
            n_train=len(split.train),
        ),
        metrics={
            "auc": test_auc,
            "train_fraction_outside": float(np.mean(train_scores > (state.R or 0.0) ** 2))
            if state.R is not None
            else None,
            "train_score_std": float(train_scores.std()),
        },
        training={
            **cfg.to_dict(),
            "net": net_cfg.to_dict(),
            "preprocessing": {"gcn": "l1", "min": float(pre.lo), "max": float(pre.hi)},
            "center_eps": 0.1,
            "radius_update": "exact (1-nu) quantile over the training set after every epoch "
            "from warm_up_epochs on (paper: line search every k epochs)",
            "score": "squared distance ||phi(x) - c||^2",
            "seconds_per_epoch": {"pretrain": pretrain_spe, **state.seconds_per_epoch},
        },
        software=software_versions(),
    )
    sample = preprocess.to_unit_tensor(
        split.holdout[:64] if len(split.holdout) else split.train[:64]
    )
    model_path, rel = export_model(ScoringModel(pre, net, c), meta, version_dir, sample)
    ckpt.remove()
    return {
        "model_path": str(model_path),
        "name": name,
        "version": version,
        "auc": test_auc,
        "train_seconds": round(train_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "seconds_per_epoch": {"pretrain": pretrain_spe, **state.seconds_per_epoch},
        "objective": cfg.objective,
        "radius": state.R,
        "default_threshold": meta.default_threshold,
        "thresholds": thresholds,
        "n_train": len(split.train),
        "export_rel_diff": rel,
        "device": cfg.device,
    }
