"""One training run, resolved once: its config, data and split, network and paths (`Run`),
and what fitting it produced (`Trained`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from modelfile.metadata import DatasetInfo
from training import preprocess
from training.advice import Notes, skipped_warning
from training.batches import Images
from training.calibration import holdout_size
from training.config import ONE_CLASS, RunSpec, TrainConfig
from training.data import DataError, ImageSet, load_dataset, resolve_class
from training.data.download import download_missing
from training.data.rows import ImageArray, select
from training.deepsvdd import TrainState
from training.ensemble import member_configs
from training.labelled import Labelled, pick_labelled
from training.networks import NetConfig, make_config

DEFAULT_ARCH = {"mnist": "mnist", "fashion-mnist": "mnist", "cifar10": "cifar10", "gtsrb": "gtsrb"}


@dataclass(frozen=True)
class Split:
    """The normal class's training images, split into training and calibration hold-out."""

    train: ImageArray
    holdout: ImageArray
    test: ImageArray | None
    test_labels: np.ndarray | None  # 0 normal, 1 anomalous


@dataclass(frozen=True)
class Run:
    """Everything one run trains on and with, resolved once: `cfg` with its device resolved,
    and `members`, the configs of an ensemble's networks (one: the run fits `cfg` itself)."""

    spec: RunSpec
    cfg: TrainConfig
    members: tuple[TrainConfig, ...]
    data: ImageSet
    k: int  # the normal class's index
    name: str
    net_cfg: NetConfig
    split: Split
    labelled: Labelled | None  # Deep SAD's labelled anomalies

    @property
    def class_name(self) -> str:
        return self.data.class_names[self.k]

    @property
    def checkpoint_path(self) -> Path:
        return self.spec.models_dir / self.name / ".checkpoint" / "train.pt"

    def dataset_info(self) -> DatasetInfo:
        data_dir = self.spec.data_dir
        return DatasetInfo(
            name=self.spec.dataset,
            normal_class=self.k,
            class_name=self.class_name,
            n_train=len(self.split.train),
            data_dir=None if data_dir is None else str(Path(data_dir).resolve()),
        )


@dataclass
class Trained:
    """What fitting produced: the trained state, the preprocessing fitted on the normal class,
    the preprocessed training images and the timings."""

    state: TrainState
    pre: preprocess.Preprocess
    images: Images  # the normal training images, preprocessed batch by batch
    seconds: float  # wall time of pretraining and training together
    pretrain_seconds_per_epoch: float | None  # None when pretraining did not run
    ensemble_medians: list[float] | None = None  # each member's held-out median (--ensemble)

    def seconds_per_epoch(self) -> dict[str, float | None]:
        """Mean seconds per epoch of each phase; pretrain is None when it did not run."""
        return {"pretrain": self.pretrain_seconds_per_epoch, **self.state.seconds_per_epoch}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but PyTorch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return device


def resolve_config(spec: RunSpec, cfg: TrainConfig) -> TrainConfig:
    """`cfg` with its device resolved, once it is known to suit `spec` (before any data)."""
    resolved = replace(cfg, device=resolve_device(cfg.device))
    if spec.anomaly_classes and cfg.objective != ONE_CLASS:
        raise ValueError("--anomaly-classes (Deep SAD) needs the one-class objective")
    if spec.resume and cfg.n_members > 1:
        raise ValueError(
            "--resume cannot continue an --ensemble run: its members are not checkpointed"
        )
    return resolved


def split_normal(data: ImageSet, k: int, holdout: float, seed: int) -> Split:
    normal = select(data.x_train, data.y_train == k)
    if len(normal) < 2:
        raise ValueError(
            f"normal class {data.class_names[k]!r} has {len(normal)} training image(s)"
        )
    order = np.random.default_rng(seed).permutation(len(normal))
    n_hold = holdout_size(len(normal), holdout)
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
        cache_dir=spec.cache_dir,
        decode=spec.decode,
    )
    if data.skipped and spec.strict:
        file, why = data.skipped[0]
        raise DataError(f"{file}: cannot read the image ({why}); --strict stops at the first")
    if data.skipped:
        notes.warn(skipped_warning(data.skipped))
    return data


def load_run(spec: RunSpec, cfg: TrainConfig, notes: Notes) -> Run:
    """Reads the data and resolves everything else the run needs from them and `cfg`
    (a config from `resolve_config`)."""
    data = load_training_data(spec, cfg.seed, notes)
    k = resolve_class(data, spec.normal_class)
    return Run(
        spec=spec,
        cfg=cfg,
        members=member_configs(cfg),
        data=data,
        k=k,
        labelled=pick_labelled(data, k, spec.anomaly_classes, spec.labelled_fraction, cfg.seed),
        name=spec.name or default_name(spec.dataset, data.class_names[k]),
        net_cfg=net_config_for(spec, data),
        split=split_normal(data, k, spec.holdout, cfg.seed),
    )
