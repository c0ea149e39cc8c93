"""Images/s of the patch model's training step (training/patch/fit.py: the relative-position
pretext plus SVDD' on patch pairs drawn afresh) in fp32 and bf16, standard and channels-last
layout. The step is rebuilt here from the patch model's parts with `training.precision`:
`deepsvdd train --model patch` itself trains in fp32 and the standard layout."""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.train_speed.variants import VARIANTS, WARMUP_IMAGES, Point, config_of, epochs_for
from training.config import TrainConfig
from training.patch.fit import (
    IMAGES_PER_STEP,
    LAMBDA,
    PAIRS_PER_IMAGE,
    PATCH_LR,
    WEIGHT_DECAY,
    standardise_from,
    to_batch,
)
from training.patch.losses import PositionHead, position_loss, svdd_prime
from training.patch.network import PatchEncoder, PatchNetConfig
from training.patch.sampling import PairGeometry, geometry, jitter_pairs, position_pairs
from training.precision import Compute

SIDE = 128  # grey images of this side, patches of PATCH_SIZE: the patch model's usual use
PATCH_SIZE = 32
PHASE = "patch SVDD"


def patch_images(n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, SIDE, SIDE, 1) uniform noise (the pixel values do not change the cost)."""
    return np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE, 1), dtype=np.uint8)


class PatchStep:
    """The encoder, position head and Adam of one timed run, stepping as fit.py does."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        net_cfg = PatchNetConfig(1, PATCH_SIZE)
        self.compute = Compute.of(cfg, device)
        self.encoder = PatchEncoder(net_cfg).to(device)
        self.head = PositionHead(net_cfg.dim, slope=net_cfg.leaky_slope).to(device)
        self.compute.place(self.encoder)
        params = [*self.encoder.parameters(), *self.head.parameters()]
        self.opt = torch.optim.Adam(params, lr=PATCH_LR, weight_decay=WEIGHT_DECAY)
        self.geo: PairGeometry = geometry(PATCH_SIZE, SIDE)
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def __call__(self, x: torch.Tensor) -> None:
        x = x.repeat_interleave(PAIRS_PER_IMAGE, dim=0)
        first, second, labels = position_pairs(x, self.geo, self.gen)
        near, far = jitter_pairs(x, self.geo, self.gen)
        with self.compute.autocast():
            f = self.encoder.embed(self.compute.batch(torch.cat([first, second, near, far])))
            f1, f2, f3, f4 = f.float().chunk(4)
            logits = self.head(f1, f2)
        loss = position_loss(logits.float(), labels) + LAMBDA * svdd_prime(f3, f4)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def time_patch(images: np.ndarray, cfg: TrainConfig, device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds per epoch of `cfg.epochs` over `images`, IMAGES_PER_STEP a step."""
    pre = standardise_from(images)
    step = PatchStep(cfg, device)
    order = np.random.default_rng(cfg.seed)
    steps = max(1, round(len(images) / IMAGES_PER_STEP))
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(cfg.epochs):
        for rows in np.array_split(order.permutation(len(images)), steps):
            step(to_batch(images, np.sort(rows), pre, str(device)))
    return (time.perf_counter() - w0) / cfg.epochs, (time.process_time() - c0) / cfg.epochs


def measure_patch(
    images: np.ndarray, target_s: float, device: str, say: bool = True
) -> list[Point]:
    """Every variant of the patch step: a warm-up epoch, then about `target_s` CPU seconds."""
    points = []
    for label, precision, last in VARIANTS:
        torch.manual_seed(0)
        warm = time_patch(
            images[:WARMUP_IMAGES], config_of(precision, last, 1), torch.device(device)
        )
        epochs = epochs_for(warm[1], len(images), target_s)
        cfg = config_of(precision, last, epochs)
        wall, cpu = time_patch(images, cfg, torch.device(device))
        points.append(Point("patch", PHASE, label, len(images), epochs, wall, cpu))
        if say:
            print(f"patch {PHASE} {label}: {points[-1].per_s:,.0f} images/s", flush=True)
    return points
