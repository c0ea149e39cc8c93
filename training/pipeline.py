"""From a dataset and a normal class to an exported model: the steps `deepsvdd train` runs."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import torch

from training import preprocess
from training.advice import Notes
from training.batches import Images, Uint8Images
from training.checkpoint import Checkpointer
from training.config import RunSpec, TrainConfig
from training.data.rows import every
from training.deepsvdd import TrainState, train_deepsvdd
from training.distributed import Dist, joined
from training.ensemble import combine
from training.networks import Encoder, NetConfig
from training.patch.pipeline import train_patch_and_export
from training.pretext import pretrainer
from training.publish import export_trained
from training.run import Run, Trained, load_run, resolve_config
from training.transforms import check_transforms, with_transforms


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def checkpointer_for(run: Run, dist: Dist, notes: Notes) -> Checkpointer:
    """The run's checkpoint; its key makes a resumed run refuse a checkpoint of other settings.

    Rank 0 reads it for --resume and hands it to the others (no shared disk needed).
    """
    spec = run.spec
    key = {
        "dataset": spec.dataset,
        "class": run.k,
        "net": run.net_cfg.to_dict(),
        "cfg": run.cfg.to_dict(),
    }
    if run.labelled is not None:
        key["labelled"] = run.labelled.record()
    path = run.checkpoint_path
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


def train_split(run: Run, ckpt: Checkpointer, dist: Dist) -> Trained:
    """Fits the preprocessing on the normal training images, then the network on them and
    on the labelled anomalies, if any (semi-target -1, after the normal rows' 0).

    The images stay uint8; each rank reads its share for the min-max constants (min and max
    combine exactly), and every batch is preprocessed as it is drawn.
    """
    split, labelled = run.split, run.labelled
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
    progress = run.spec.progress and dist.is_main
    if len(run.members) == 1:
        state, pretrain_spe = fit(run.net_cfg, fit_images, run.cfg, ckpt, progress, dist, semi)
        return Trained(state, pre, images, time.perf_counter() - started, pretrain_spe)
    # No member is checkpointed (--resume refuses an ensemble).
    fits = [
        fit(run.net_cfg, fit_images, member, None, progress, dist, semi) for member in run.members
    ]
    state, medians = combine([s for s, _ in fits], Uint8Images(split.holdout, pre, "cpu"))
    return Trained(state, pre, images, time.perf_counter() - started, fits[0][1], medians)


def export_kept(
    run: Run, trained: Trained, dist: Dist, notes: Notes, ckpt: Checkpointer
) -> dict[str, Any]:
    """`export_trained`; when the disk refuses the model, the error says that the trained
    weights are still in the checkpoint, for a run with --resume once there is room."""
    try:
        return export_trained(run, trained, dist, notes)
    except OSError as exc:
        kept = f"; the trained weights are kept in {ckpt.path}" if ckpt.path.exists() else ""
        retry = ": make room and run the same command with --resume" if kept else ""
        raise OSError(exc.errno, f"{exc.strerror or exc}{kept}{retry}") from exc


def train_and_export(spec: RunSpec, cfg: TrainConfig) -> dict[str, Any] | None:
    """Loads data, trains, calibrates thresholds, evaluates and exports; returns the summary.

    Under torchrun every rank trains; rank 0 alone calibrates and exports while the others
    wait, and only rank 0 returns the summary (the others None).
    """
    started = time.perf_counter()
    cfg = resolve_config(spec, cfg)
    if cfg.model == "patch":
        return train_patch_and_export(spec, cfg)
    with joined(cfg.device) as dist:
        # Every rank reads the data; only rank 0 tells the user about it.
        notes = Notes(status=spec.progress) if dist.is_main else Notes(status=False)
        run = load_run(spec, cfg, notes)
        ckpt = checkpointer_for(run, dist, notes)
        notes.say(
            f"training on {len(run.split.train)} normal images"
            + (f" and {len(run.labelled.x)} labelled anomalies" if run.labelled else "")
            + f"; thresholds from {len(run.split.holdout)} held out"
            + (f"; {dist.world} processes" if dist.active else "")
        )
        trained = train_split(run, ckpt, dist)
        summary = None
        if dist.is_main:
            summary = export_kept(run, trained, dist, notes, ckpt)
            ckpt.remove()
            summary["total_seconds"] = round(time.perf_counter() - started, 3)
        dist.barrier()  # the others wait for the export; its failure stops the job
    return summary
