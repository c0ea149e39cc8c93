"""What a patch run refuses before any data or training: options it does not take, images
smaller than its patches, too few normal images to fill the memory bank."""

from __future__ import annotations

import math
import os

from training.config import ONE_CLASS, RunSpec, TrainConfig
from training.patch.network import grid_shape
from training.patch.sampling import min_side


def refuse_unsupported(spec: RunSpec, cfg: TrainConfig) -> None:
    """The whole-image options that a patch model has no use for, named one by one."""
    if cfg.objective != ONE_CLASS:
        raise ValueError(
            "--model patch is one-class: --objective soft-boundary is for --model image"
        )
    if spec.resume:
        raise ValueError("--model patch does not checkpoint: --resume is for --model image")
    if cfg.n_members > 1:
        raise ValueError(
            "--model patch trains one network: --ensemble and --members are for --model image"
        )
    if spec.anomaly_classes:
        raise ValueError(
            "--model patch trains on normal images alone: --anomaly-classes is for --model image"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--model patch trains in one process: run it without torchrun")


def check_image_size(height: int, width: int, patch_size: int) -> None:
    """Images must hold a patch and a neighbour for the position pretext."""
    need = min_side(patch_size)
    if min(height, width) < need:
        raise ValueError(
            f"images of {width}x{height} px are too small for {patch_size}-px patches: "
            f"--model patch needs at least {need} px a side; use --image-size {need} or more, "
            "or a smaller --patch-size"
        )


def check_bank(n_train: int, n_holdout: int, height: int, width: int, cfg: TrainConfig) -> None:
    """The coreset is chosen among the training images' grid patches: there must be enough."""
    h, w = grid_shape(height, width, cfg.patch_size)
    need = math.ceil(cfg.coreset / (h * w))
    if n_train < need:
        raise ValueError(
            f"--coreset {cfg.coreset} needs at least {need} normal training images of "
            f"{width}x{height} px ({h * w} patches each), but {n_train} are left after holding "
            f"out {n_holdout} for the thresholds; add images or lower --coreset"
        )
