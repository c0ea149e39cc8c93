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
from training.batches import Images, Uint8Images
from training.calibration import TrainingFigures, calibrate, holdout_size
from training.checkpoint import Checkpointer
from training.config import ONE_CLASS, TrainConfig
from training.data import DataError, ImageSet, load_dataset, resolve_class
from training.data.download import download_missing
from training.data.rows import ImageArray, every, select
from training.deepsvdd import TrainState, score, train_deepsvdd
from training.distributed import Dist, joined
from training.ensemble import combine, member_configs
from training.export import ScoringModel, export_model
from training.labelled import Labelled, pick_labelled
from training.metadata import build_metadata, seconds_per_epoch
from training.networks import Encoder, NetConfig, make_config
from training.pretext import pretrainer
from training.transforms import check_transforms, with_transforms

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
    anomaly_classes: tuple[str, ...] = ()  # Deep SAD: classes whose training images are labelled
    labelled_fraction: float = 1.0  # share of each such class's training images used
    strict: bool = False  # stop at the first unreadable image file instead of skipping it


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


def fit(
    net_cfg: NetConfig,
    data: Images | torch.Tensor,
    cfg: TrainConfig,
    ckpt: Checkpointer | None,
    progress: bool,
    dist: Dist | None = None,
    semi_targets: torch.Tensor | None = None,
) -> tuple[TrainState, float | None]:
    """Pretrains (unless off, or a resumed run is past it), then trains Deep SVDD (Deep SAD
    with `semi_targets`; the pretraining then sees the labelled images too, as in Deep SAD).

    The pretraining is the DCAE or rotation prediction (`cfg.pretrain_task`); Deep SVDD has a
    centre per transformation of `cfg.transforms` (one, c, for the identity)."""
    check_transforms(cfg.transforms, net_cfg.height, net_cfg.width)
    seed_everything(cfg.seed)
    net = Encoder(net_cfg).to(data.device)
    pre_seconds = None
    skip_pretrain = ckpt is not None and ckpt.phase == "train"
    if cfg.pretrain and not skip_pretrain:
        encoder, _, pre_seconds = pretrainer(cfg)(net_cfg, data, cfg, ckpt, progress, dist)
        net.load_state_dict(encoder.state_dict())  # weights and BN buffers
    model = with_transforms(net, cfg.transforms)
    state = train_deepsvdd(model, data, cfg, ckpt, progress, dist, semi_targets)
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
        cache_dir=spec.cache_dir,
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
    dist: Dist,
    labelled: Labelled | None,
    notes: Notes,
) -> Checkpointer:
    """The run's checkpoint; its key makes a resumed run refuse a checkpoint of other settings.

    Rank 0 reads it for --resume and hands it to the others (no shared disk needed).
    """
    key = {"dataset": spec.dataset, "class": k, "net": net_cfg.to_dict(), "cfg": cfg.to_dict()}
    if labelled is not None:
        key["labelled"] = labelled.record()
    path = spec.models_dir / name / ".checkpoint" / "train.pt"
    if spec.resume and dist.is_main and not path.exists():
        notes.warn(f"--resume: no checkpoint at {path}; starting afresh")
    ckpt = Checkpointer(
        path,
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
    labelled: Labelled | None = None,
) -> Trained:
    """Fits the preprocessing on the normal training images, then the network on them and
    on the labelled anomalies, if any (semi-target -1, after the normal rows' 0).

    The images stay uint8; each rank reads its share for the min-max constants (min and max
    combine exactly), and every batch is preprocessed as it is drawn.
    """
    dist = dist or Dist(device=cfg.device)
    shard = every(split.train, dist.rank, dist.world)
    pre = preprocess.preprocess_from_range(*dist.min_max(*preprocess.gcn_range(shard)))
    images = Uint8Images(split.train, pre, dist.device)
    fit_images, semi = images, None
    if labelled is not None:
        # Labelled anomalies are few: the normal rows are read into memory beside them.
        both = np.concatenate([np.asarray(split.train), labelled.x])
        fit_images = Uint8Images(both, pre, dist.device)
        semi = torch.cat([torch.zeros(len(split.train)), -torch.ones(len(labelled.x))])
        semi = semi.to(dist.device)
    started = time.perf_counter()
    progress = progress and dist.is_main
    if cfg.n_members == 1:
        state, pretrain_spe = fit(net_cfg, fit_images, cfg, ckpt, progress, dist, semi)
        return Trained(state, pre, images, time.perf_counter() - started, pretrain_spe)
    # No member is checkpointed (--resume refuses an ensemble).
    fits = [
        fit(net_cfg, fit_images, member, None, progress, dist, semi)
        for member in member_configs(cfg)
    ]
    state, medians = combine([s for s, _ in fits], Uint8Images(split.holdout, pre, "cpu"))
    return Trained(state, pre, images, time.perf_counter() - started, fits[0][1], medians)


def calibrate_trained(trained: Trained, split: Split) -> TrainingFigures:
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
    if spec.anomaly_classes and cfg.objective != ONE_CLASS:
        raise ValueError("--anomaly-classes (Deep SAD) needs the one-class objective")
    member_configs(cfg)  # a bad --members entry stops here, before the data are read
    if spec.resume and cfg.n_members > 1:
        raise ValueError(
            "--resume cannot continue an --ensemble run: its members are not checkpointed"
        )
    with joined(cfg.device) as dist:
        # Every rank reads the data; only rank 0 tells the user about it.
        notes = Notes(status=spec.progress) if dist.is_main else Notes(status=False)
        data = load_training_data(spec, cfg.seed, notes)
        k = resolve_class(data, spec.normal_class)
        labelled = pick_labelled(data, k, spec.anomaly_classes, spec.labelled_fraction, cfg.seed)
        name = spec.name or default_name(spec.dataset, data.class_names[k])
        net_cfg = net_config_for(spec, data)
        split = split_normal(data, k, spec.holdout, cfg.seed)
        ckpt = checkpointer_for(spec, name, k, net_cfg, cfg, dist, labelled, notes)
        notes.say(
            f"training on {len(split.train)} normal images"
            + (f" and {len(labelled.x)} labelled anomalies" if labelled else "")
            + f"; thresholds from {len(split.holdout)} held out"
            + (f"; {dist.world} processes" if dist.active else "")
        )
        trained = train_split(net_cfg, split, cfg, ckpt, spec.progress, dist, labelled)
        summary = None
        if dist.is_main:
            summary = export_trained(
                spec, cfg, data, k, name, net_cfg, split, trained, dist, labelled, notes
            )
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
    labelled: Labelled | None,
    notes: Notes,
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
            data_dir=None if spec.data_dir is None else str(Path(spec.data_dir).resolve()),
        ),
        calibration=calibration,
        pretrain_seconds_per_epoch=trained.pretrain_seconds_per_epoch,
        labelled=None if labelled is None else labelled.record(),
        distributed=dist.record(),
        ensemble=ensemble_record(cfg, trained.ensemble_medians),
    )
    for warning in calibration_warnings(calibration, meta.default_threshold):
        notes.warn(warning)
    sample = preprocess.to_unit_tensor(
        split.holdout[:64] if len(split.holdout) else split.train[:64]
    )
    scoring = ScoringModel(trained.pre, trained.state.net, trained.state.c.cpu())
    model_path, rel = export_model(scoring, meta, version_dir, sample)
    auc = "no test split" if calibration.auc is None else f"test AUC {calibration.auc:.3f}"
    notes.say(f"exported {model_path} ({auc})")
    summary = run_summary(model_path, meta, trained, cfg, rel, dist)
    skipped = [{"file": file, "error": why} for file, why in data.skipped]
    return {**summary, "skipped": skipped, "n_skipped": len(skipped), "warnings": notes.warnings}


def ensemble_record(cfg: TrainConfig, medians: list[float] | None) -> dict[str, Any] | None:
    if medians is None:
        return None
    members = member_configs(cfg)
    return {
        "members": len(members),
        "kinds": [f"{m.pretrain_task if m.pretrain else 'none'}:{m.transforms}" for m in members],
        "seeds": [m.seed for m in members],
        "holdout_medians": medians,
        "score": "sum over the members of ||phi_m(x) - c_m||^2 / q_m, q_m the member's median "
        "score on the held-out normal images",
    }


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
        "calibration": None if meta.calibration is None else meta.calibration.model_dump(),
        "labelled": meta.training.get("labelled"),
        "threads": torch.get_num_threads(),
    }
