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
from training.advice import Notes, calibration_warnings, skipped_warning
from training.calibration import Calibration, calibrate, holdout_size
from training.checkpoint import Checkpointer
from training.data import DataError, ImageSet, load_dataset, resolve_class
from training.data.download import download_missing
from training.deepsvdd import TrainConfig, TrainState, pretrain_dcae, score, train_deepsvdd
from training.export import ScoringModel, export_model
from training.labelled import Labelled, pick_labelled
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
    anomaly_classes: tuple[str, ...] = ()  # Deep SAD: classes whose training images are labelled
    labelled_fraction: float = 1.0  # share of each such class's training images used
    strict: bool = False  # stop at the first unreadable image file instead of skipping it


@dataclass
class Trained:
    """What fitting produced: the trained state, the preprocessing fitted on the normal class,
    the preprocessed training images and the timings."""

    state: TrainState
    pre: preprocess.Preprocess
    x: torch.Tensor  # preprocessed normal training images, on the training device
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
    n_hold = holdout_size(len(normal), holdout)
    labels = None if data.y_test is None else (data.y_test != k).astype(np.int64)
    return Split(normal[order[n_hold:]], normal[order[:n_hold]], data.x_test, labels)


def default_name(dataset: str, class_name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", f"{dataset}-{class_name}".lower()).strip("-._")[:64]


def net_config_for(spec: RunSpec, data: ImageSet) -> NetConfig:
    _, h, w, ch = data.x_train.shape
    arch = spec.arch or DEFAULT_ARCH.get(spec.dataset, "mnist" if ch == 1 else "cifar10")
    return make_config(arch, ch, h, w, spec.leaky_slope)


def fit(
    net_cfg: NetConfig,
    x: torch.Tensor,
    cfg: TrainConfig,
    ckpt: Checkpointer | None,
    progress: bool,
    semi_targets: torch.Tensor | None = None,
) -> tuple[TrainState, float | None]:
    """Pretrains (unless off, or a resumed run is past it), then trains Deep SVDD (Deep SAD
    with `semi_targets`; the autoencoder then sees the labelled images too, as in Deep SAD)."""
    seed_everything(cfg.seed)
    net = Encoder(net_cfg).to(x.device)
    pre_seconds = None
    skip_pretrain = ckpt is not None and ckpt.phase == "train"
    if cfg.pretrain and not skip_pretrain:
        encoder, _, pre_seconds = pretrain_dcae(net_cfg, x, cfg, ckpt, progress)
        net.load_state_dict(encoder.state_dict())  # weights and BN buffers
    state = train_deepsvdd(net, x, cfg, ckpt, progress, semi_targets)
    return state, pre_seconds


def load_training_data(spec: RunSpec, seed: int, notes: Notes) -> ImageSet:
    """Downloads first where asked, then loads the dataset at the requested size and channels;
    unreadable files are skipped with a warning, or stop the run under `strict`."""
    if spec.download:
        download_missing(spec.dataset, spec.data_dir)
    notes.say(f"loading {spec.dataset} data...")
    data = load_dataset(
        spec.dataset,
        spec.data_dir,
        image_size=spec.image_size,
        channels=spec.channels,
        seed=seed,
    )
    if data.skipped and spec.strict:
        file, why = data.skipped[0]
        raise DataError(f"{file}: cannot read the image ({why}); --strict stops at the first")
    if data.skipped:
        notes.warn(skipped_warning(data.skipped))
    return data


def checkpointer_for(
    spec: RunSpec,
    name: str,
    k: int,
    net_cfg: NetConfig,
    cfg: TrainConfig,
    labelled: Labelled | None,
    notes: Notes,
) -> Checkpointer:
    """The run's checkpoint; its key makes a resumed run refuse a checkpoint of other settings."""
    key = {"dataset": spec.dataset, "class": k, "net": net_cfg.to_dict(), "cfg": cfg.to_dict()}
    if labelled is not None:
        key["labelled"] = labelled.record()
    path = spec.models_dir / name / ".checkpoint" / "train.pt"
    if spec.resume and not path.exists():
        notes.warn(f"--resume: no checkpoint at {path}; starting afresh")
    return Checkpointer(path, key, every=spec.checkpoint_every, resume=spec.resume)


def train_split(
    net_cfg: NetConfig,
    split: Split,
    cfg: TrainConfig,
    ckpt: Checkpointer,
    progress: bool,
    labelled: Labelled | None = None,
) -> Trained:
    """Fits the preprocessing on the normal training images, then the network on them and
    on the labelled anomalies, if any (semi-target -1, after the normal rows' 0)."""
    pre = preprocess.fit_preprocess(split.train)
    x = preprocess.apply(pre, split.train).to(cfg.device)
    x_fit, semi = x, None
    if labelled is not None:
        anomalies = preprocess.apply(pre, labelled.x).to(cfg.device)
        x_fit = torch.cat([x, anomalies])
        semi = torch.cat([torch.zeros(len(x)), -torch.ones(len(anomalies))]).to(cfg.device)
    started = time.perf_counter()
    state, pretrain_spe = fit(net_cfg, x_fit, cfg, ckpt, progress, semi)
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
    notes = Notes(status=spec.progress)
    cfg.device = resolve_device(cfg.device)
    if spec.anomaly_classes and cfg.objective != "one-class":
        raise ValueError("--anomaly-classes (Deep SAD) needs the one-class objective")
    data = load_training_data(spec, cfg.seed, notes)
    k = resolve_class(data, spec.normal_class)
    labelled = pick_labelled(data, k, spec.anomaly_classes, spec.labelled_fraction, cfg.seed)
    name = spec.name or default_name(spec.dataset, data.class_names[k])
    net_cfg = net_config_for(spec, data)
    split = split_normal(data, k, spec.holdout, cfg.seed)
    ckpt = checkpointer_for(spec, name, k, net_cfg, cfg, labelled, notes)
    notes.say(
        f"training on {len(split.train)} normal images"
        + (f" and {len(labelled.x)} labelled anomalies" if labelled else "")
        + f"; thresholds from {len(split.holdout)} held out"
    )
    trained = train_split(net_cfg, split, cfg, ckpt, spec.progress, labelled)
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
            data_dir=None if spec.data_dir is None else str(Path(spec.data_dir).resolve()),
        ),
        calibration=calibration,
        pretrain_seconds_per_epoch=trained.pretrain_seconds_per_epoch,
        labelled=None if labelled is None else labelled.record(),
    )
    for warning in calibration_warnings(calibration, meta.default_threshold):
        notes.warn(warning)
    sample = preprocess.to_unit_tensor(
        split.holdout[:64] if len(split.holdout) else split.train[:64]
    )
    scoring = ScoringModel(trained.pre, trained.state.net, trained.state.c.cpu())
    model_path, rel = export_model(scoring, meta, version_dir, sample)
    ckpt.remove()
    auc = "no test split" if calibration.auc is None else f"test AUC {calibration.auc:.3f}"
    notes.say(f"exported {model_path} ({auc})")
    summary = run_summary(
        model_path, meta, trained, cfg, rel, total_seconds=time.perf_counter() - started
    )
    skipped = [{"file": file, "error": why} for file, why in data.skipped]
    return {**summary, "skipped": skipped, "n_skipped": len(skipped), "warnings": notes.warnings}


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
        "calibration": None if meta.calibration is None else meta.calibration.model_dump(),
        "labelled": meta.training.get("labelled"),
        "export_rel_diff": export_rel_diff,
        "device": cfg.device,
        "threads": torch.get_num_threads(),
    }
