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
from training.batches import Images, Uint8Images
from training.calibration import Calibration, calibrate
from training.checkpoint import Checkpointer
from training.data import ImageSet, load_dataset, resolve_class
from training.data.download import download_missing
from training.data.rows import ImageArray, every, select
from training.deepsvdd import TrainConfig, TrainState, pretrain_dcae, score, train_deepsvdd
from training.distributed import Dist, joined
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
    cache_dir: Path | None = None  # folder: decoded images memory-mapped here


@dataclass
class Trained:
    """What fitting produced: the trained state, the preprocessing fitted on the normal class,
    the preprocessed training images and the timings."""

    state: TrainState
    pre: preprocess.Preprocess
    images: Images  # the training images, preprocessed batch by batch
    seconds: float  # wall time of pretraining and training together
    pretrain_seconds_per_epoch: float | None  # None when pretraining did not run


@dataclass
class Split:
    """The normal class's training images, split into training and calibration hold-out."""

    train: ImageArray
    holdout: ImageArray
    test: ImageArray | None
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
    normal = select(data.x_train, data.y_train == k)
    if len(normal) < 2:
        raise ValueError(
            f"normal class {data.class_names[k]!r} has {len(normal)} training image(s)"
        )
    order = np.random.default_rng(seed).permutation(len(normal))
    n_hold = min(len(normal) - 1, round(holdout * len(normal)))
    labels = None if data.y_test is None else (data.y_test != k).astype(np.int64)
    return Split(
        select(normal, order[n_hold:]), select(normal, order[:n_hold]), data.x_test, labels
    )


def default_name(dataset: str, class_name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", f"{dataset}-{class_name}".lower()).strip("-._")[:64]


def net_config_for(spec: RunSpec, data: ImageSet) -> NetConfig:
    _, h, w, ch = data.x_train.shape
    arch = spec.arch or DEFAULT_ARCH.get(spec.dataset, "mnist" if ch == 1 else "cifar10")
    return make_config(arch, ch, h, w, spec.leaky_slope)


def fit(
    net_cfg: NetConfig,
    data: Images | torch.Tensor,
    cfg: TrainConfig,
    ckpt: Checkpointer | None,
    progress: bool,
    dist: Dist | None = None,
) -> tuple[TrainState, float | None]:
    """Pretrains (unless off, or a resumed run is past it), then trains Deep SVDD."""
    seed_everything(cfg.seed)
    net = Encoder(net_cfg).to(data.device)
    pre_seconds = None
    skip_pretrain = ckpt is not None and ckpt.phase == "train"
    if cfg.pretrain and not skip_pretrain:
        encoder, _, pre_seconds = pretrain_dcae(net_cfg, data, cfg, ckpt, progress, dist)
        net.load_state_dict(encoder.state_dict())  # weights and BN buffers
    state = train_deepsvdd(net, data, cfg, ckpt, progress, dist)
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
        cache_dir=spec.cache_dir,
    )


def checkpointer_for(
    spec: RunSpec, name: str, k: int, net_cfg: NetConfig, cfg: TrainConfig, dist: Dist
) -> Checkpointer:
    """The run's checkpoint; its key makes a resumed run refuse a checkpoint of other settings.

    Rank 0 reads it for --resume and hands it to the others (no shared disk needed).
    """
    key = {"dataset": spec.dataset, "class": k, "net": net_cfg.to_dict(), "cfg": cfg.to_dict()}
    ckpt = Checkpointer(
        spec.models_dir / name / ".checkpoint" / "train.pt",
        key,
        every=spec.checkpoint_every,
        resume=spec.resume and dist.is_main,
    )
    if spec.resume and dist.active:
        ckpt.adopt(dist.share(lambda: ckpt.saved))
    return ckpt


def train_split(
    net_cfg: NetConfig,
    split: Split,
    cfg: TrainConfig,
    ckpt: Checkpointer,
    progress: bool,
    dist: Dist | None = None,
) -> Trained:
    """Fits the preprocessing on the normal training images, then the network on them.

    The images stay uint8; each rank reads its share for the min-max constants (min and max
    combine exactly), and every batch is preprocessed as it is drawn.
    """
    dist = dist or Dist(device=cfg.device)
    shard = every(split.train, dist.rank, dist.world)
    pre = preprocess.preprocess_from_range(*dist.min_max(*preprocess.gcn_range(shard)))
    images = Uint8Images(split.train, pre, dist.device)
    started = time.perf_counter()
    state, pretrain_spe = fit(net_cfg, images, cfg, ckpt, progress and dist.is_main, dist)
    return Trained(state, pre, images, time.perf_counter() - started, pretrain_spe)


def calibrate_trained(trained: Trained, split: Split) -> Calibration:
    """Scores the hold-out, test and training images on the CPU and calibrates from them."""
    net, c, pre = trained.state.net.cpu(), trained.state.c.cpu(), trained.pre.cpu()
    holdout = score(net, c, Uint8Images(split.holdout, pre, "cpu")).numpy()
    test = None if split.test is None else score(net, c, Uint8Images(split.test, pre, "cpu"))
    return calibrate(
        holdout=holdout,
        train=score(net, c, Uint8Images(split.train, pre, "cpu")).numpy(),
        test=None if test is None else test.numpy(),
        test_labels=split.test_labels,
        R=trained.state.R,
    )


def train_and_export(spec: RunSpec, cfg: TrainConfig) -> dict[str, Any] | None:
    """Loads data, trains, calibrates thresholds, evaluates and exports; returns the summary.

    Under torchrun every rank trains; rank 0 alone calibrates and exports while the others
    wait, and only rank 0 returns the summary (the others None).
    """
    started = time.perf_counter()
    cfg.device = resolve_device(cfg.device)
    with joined(cfg.device) as dist:
        data = load_training_data(spec, cfg.seed)
        k = resolve_class(data, spec.normal_class)
        name = spec.name or default_name(spec.dataset, data.class_names[k])
        net_cfg = net_config_for(spec, data)
        split = split_normal(data, k, spec.holdout, cfg.seed)
        ckpt = checkpointer_for(spec, name, k, net_cfg, cfg, dist)
        trained = train_split(net_cfg, split, cfg, ckpt, spec.progress, dist)
        summary = None
        if dist.is_main:
            summary = export_trained(spec, cfg, data, k, name, net_cfg, split, trained, dist)
            ckpt.remove()
            summary["total_seconds"] = round(time.perf_counter() - started, 3)
        dist.barrier()  # the others wait for the export; its failure stops the job
    return summary


def export_trained(
    spec: RunSpec,
    cfg: TrainConfig,
    data: ImageSet,
    k: int,
    name: str,
    net_cfg: NetConfig,
    split: Split,
    trained: Trained,
    dist: Dist,
) -> dict[str, Any]:
    """Calibrates, writes the next version of the model and returns the run's summary."""
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
        distributed=dist.record(),
    )
    sample = preprocess.to_unit_tensor(
        split.holdout[:64] if len(split.holdout) else split.train[:64]
    )
    scoring = ScoringModel(trained.pre, trained.state.net, trained.state.c.cpu())
    model_path, rel = export_model(scoring, meta, version_dir, sample)
    return run_summary(model_path, meta, trained, cfg, rel, dist)


def run_summary(
    model_path: Path,
    meta: ModelMetadata,
    trained: Trained,
    cfg: TrainConfig,
    export_rel_diff: float,
    dist: Dist,
) -> dict[str, Any]:
    """The one JSON object `deepsvdd train` prints: where the model went and how it fared."""
    return {
        "model_path": str(model_path),
        "name": meta.name,
        "version": meta.version,
        "auc": meta.metrics["auc"],
        "train_seconds": round(trained.seconds, 3),
        "seconds_per_epoch": seconds_per_epoch(trained.state, trained.pretrain_seconds_per_epoch),
        "objective": cfg.objective,
        "radius": trained.state.R,
        "default_threshold": meta.default_threshold,
        "thresholds": meta.thresholds,
        "n_train": meta.dataset.n_train,
        "export_rel_diff": export_rel_diff,
        "device": cfg.device,
        "world_size": dist.world,
    }
