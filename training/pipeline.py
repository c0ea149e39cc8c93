"""From a dataset and a normal class to an exported model: the steps `deepsvdd train` runs."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelfile.layout import claim_version
from modelfile.metadata import DatasetInfo, ModelMetadata
from training import preprocess
from training.calibration import Calibration, calibrate
from training.checkpoint import Checkpointer
from training.data import ImageSet, load_dataset, resolve_class
from training.data.download import download_missing
from training.deepsvdd import TrainConfig, TrainState, pretrain_dcae, score, train_deepsvdd
from training.export import ScoringModel, export_model
from training.metadata import build_metadata, seconds_per_epoch
from training.networks import Encoder, NetConfig, make_config

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
class Trained:
    """What fitting produced: the trained state, the preprocessing fitted on the normal class,
    the preprocessed training images and the timings."""

    state: TrainState
    pre: preprocess.Preprocess
    x: torch.Tensor  # preprocessed training images, on the training device
    seconds: float  # wall time of pretraining and training together
    pretrain_seconds_per_epoch: float | None  # None when pretraining did not run


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


def default_name(dataset: str, class_name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", f"{dataset}-{class_name}".lower()).strip("-._")[:64]


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


def load_training_data(spec: RunSpec, seed: int) -> ImageSet:
    """Downloads first where asked, then loads the dataset at the requested size and channels."""
    if spec.download:
        download_missing(spec.dataset, spec.data_dir)
    return load_dataset(
        spec.dataset,
        spec.data_dir,
        image_size=spec.image_size,
        channels=spec.channels,
        seed=seed,
    )


def checkpointer_for(
    spec: RunSpec, name: str, k: int, net_cfg: NetConfig, cfg: TrainConfig
) -> Checkpointer:
    """The run's checkpoint; its key makes a resumed run refuse a checkpoint of other settings."""
    key = {"dataset": spec.dataset, "class": k, "net": net_cfg.to_dict(), "cfg": cfg.to_dict()}
    return Checkpointer(
        spec.models_dir / name / ".checkpoint" / "train.pt",
        key,
        every=spec.checkpoint_every,
        resume=spec.resume,
    )


def train_split(
    net_cfg: NetConfig, split: Split, cfg: TrainConfig, ckpt: Checkpointer, progress: bool
) -> Trained:
    """Fits the preprocessing on the normal training images, then the network on them."""
    pre = preprocess.fit_preprocess(split.train)
    x = preprocess.apply(pre, split.train).to(cfg.device)
    started = time.perf_counter()
    state, pretrain_spe = fit(net_cfg, x, cfg, ckpt, progress)
    return Trained(state, pre, x, time.perf_counter() - started, pretrain_spe)


def calibrate_trained(trained: Trained, split: Split) -> Calibration:
    """Scores the hold-out, test and training images on the CPU and calibrates from them."""
    net, c, pre = trained.state.net.cpu(), trained.state.c.cpu(), trained.pre
    holdout = score(net, c, preprocess.apply(pre, split.holdout)).numpy()
    test = None if split.test is None else score(net, c, preprocess.apply(pre, split.test)).numpy()
    return calibrate(
        holdout=holdout,
        train=score(net, c, trained.x.cpu()).numpy(),
        test=test,
        test_labels=split.test_labels,
        R=trained.state.R,
    )


def train_and_export(spec: RunSpec, cfg: TrainConfig) -> dict[str, Any]:
    """Loads data, trains, calibrates thresholds, evaluates and exports; returns the summary."""
    started = time.perf_counter()
    cfg.device = resolve_device(cfg.device)
    data = load_training_data(spec, cfg.seed)
    k = resolve_class(data, spec.normal_class)
    name = spec.name or default_name(spec.dataset, data.class_names[k])
    net_cfg = net_config_for(spec, data)
    split = split_normal(data, k, spec.holdout, cfg.seed)
    ckpt = checkpointer_for(spec, name, k, net_cfg, cfg)
    trained = train_split(net_cfg, split, cfg, ckpt, spec.progress)
    calibration = calibrate_trained(trained, split)

    version, version_dir = claim_version(spec.models_dir / name)
    meta = build_metadata(
        name=name,
        version=version,
        cfg=cfg,
        net_cfg=net_cfg,
        state=trained.state,
        pre=trained.pre,
        color=data.color,
        dataset=DatasetInfo(
            name=spec.dataset,
            normal_class=k,
            class_name=data.class_names[k],
            n_train=len(split.train),
        ),
        calibration=calibration,
        pretrain_seconds_per_epoch=trained.pretrain_seconds_per_epoch,
    )
    sample = preprocess.to_unit_tensor(
        split.holdout[:64] if len(split.holdout) else split.train[:64]
    )
    scoring = ScoringModel(trained.pre, trained.state.net, trained.state.c.cpu())
    model_path, rel = export_model(scoring, meta, version_dir, sample)
    ckpt.remove()
    return run_summary(
        model_path, meta, trained, cfg, rel, total_seconds=time.perf_counter() - started
    )


def run_summary(
    model_path: Path,
    meta: ModelMetadata,
    trained: Trained,
    cfg: TrainConfig,
    export_rel_diff: float,
    total_seconds: float,
) -> dict[str, Any]:
    """The one JSON object `deepsvdd train` prints: where the model went and how it fared."""
    return {
        "model_path": str(model_path),
        "name": meta.name,
        "version": meta.version,
        "auc": meta.metrics["auc"],
        "train_seconds": round(trained.seconds, 3),
        "total_seconds": round(total_seconds, 3),
        "seconds_per_epoch": seconds_per_epoch(trained.state, trained.pretrain_seconds_per_epoch),
        "objective": cfg.objective,
        "radius": trained.state.R,
        "default_threshold": meta.default_threshold,
        "thresholds": meta.thresholds,
        "n_train": meta.dataset.n_train,
        "export_rel_diff": export_rel_diff,
        "device": cfg.device,
    }
