"""Images/s of each training phase in fp32 and bf16 autocast, in the standard and the
channels-last layout, for the paper's three networks: `deepsvdd train`'s own loops, each
variant chosen as `--precision` and `--channels-last` choose it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from training import preprocess
from training.batches import Uint8Images
from training.config import TrainConfig
from training.deepsvdd import init_center_c, pretrain_dcae, train_deepsvdd
from training.networks import Encoder, NetConfig, make_config

# (label, precision, channels-last), the library's fp32 in the standard layout first.
VARIANTS: tuple[tuple[str, str, bool], ...] = (
    ("fp32", "fp32", False),
    ("fp32 + channels-last", "fp32", True),
    ("bf16", "bf16", False),
    ("bf16 + channels-last", "bf16", True),
)
PHASES = ("DCAE", "Deep SVDD")
# The paper's networks with the input each was built for: (channels, side).
NETWORKS = {"mnist": (1, 28), "cifar10": (3, 32), "gtsrb": (3, 32)}
WARMUP_IMAGES = 50  # run first in each variant: the kernels are built, the memory allocated
MAX_EPOCHS = 50


@dataclass(frozen=True)
class Point:
    """One (network, phase, variant): images per second of wall time and of CPU time."""

    network: str
    phase: str
    variant: str
    images: int
    epochs: int
    wall_s: float  # per epoch, the loop's own epoch timer
    cpu_s: float  # per epoch, this process's CPU time (all threads)

    @property
    def per_s(self) -> float:
        return self.images / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.images / self.cpu_s


def network_images(network: str, fashion: np.ndarray | None, n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, H, W, C) training images for `network`: Fashion-MNIST for the MNIST network
    (unless None); uniform noise of the right shape otherwise (the values do not change the
    cost)."""
    channels, side = NETWORKS[network]
    if fashion is not None and channels == 1 and fashion.shape[1] == side:
        return fashion[:n]
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, side, side, channels), dtype=np.uint8)


def config_of(precision: str, channels_last: bool, epochs: int) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        pretrain_epochs=epochs,
        precision=precision,  # type: ignore[arg-type]  # one of VARIANTS'
        channels_last=channels_last,
    )


def time_dcae(net_cfg: NetConfig, data: Uint8Images, cfg: TrainConfig) -> tuple[float, float]:
    """(wall, CPU) seconds per DCAE epoch."""
    c0 = time.process_time()
    _, _, wall = pretrain_dcae(net_cfg, data, cfg)
    return wall, (time.process_time() - c0) / cfg.pretrain_epochs


def time_svdd(net_cfg: NetConfig, data: Uint8Images, cfg: TrainConfig) -> tuple[float, float]:
    """(wall, CPU) seconds per Deep SVDD epoch, less the CPU time of computing c first."""
    net = Encoder(net_cfg).to(data.device)
    c0 = time.process_time()
    init_center_c(net, data)
    c1 = time.process_time()
    state = train_deepsvdd(net, data, cfg)
    cpu = time.process_time() - c1 - (c1 - c0)
    return state.seconds_per_epoch["train"], cpu / cfg.epochs


TIMERS = {"DCAE": time_dcae, "Deep SVDD": time_svdd}


def epochs_for(warm_cpu_s: float, n: int, target_s: float) -> int:
    """Epochs of `n` images that take about `target_s` CPU seconds, from the warm-up epoch's
    CPU seconds for WARMUP_IMAGES images (1 to MAX_EPOCHS)."""
    per_epoch = warm_cpu_s / WARMUP_IMAGES * n
    return max(1, min(MAX_EPOCHS, math.ceil(target_s / max(per_epoch, 1e-9))))


def measure_network(
    network: str, images: np.ndarray, target_s: float, device: str, say: bool = True
) -> list[Point]:
    """Every (phase, variant) of one network: a warm-up epoch of WARMUP_IMAGES images, then
    as many epochs of all the images as take about `target_s` CPU seconds."""
    channels, side = NETWORKS[network]
    net_cfg = make_config(network, channels, side, side)
    pre = preprocess.fit_preprocess(images)
    data = Uint8Images(images, pre, device)
    warm = Uint8Images(images[:WARMUP_IMAGES], pre, device)
    points = []
    for phase in PHASES:
        for label, precision, last in VARIANTS:
            torch.manual_seed(0)
            _, warm_cpu = TIMERS[phase](net_cfg, warm, config_of(precision, last, 1))
            epochs = epochs_for(warm_cpu, len(images), target_s)
            wall, cpu = TIMERS[phase](net_cfg, data, config_of(precision, last, epochs))
            points.append(Point(network, phase, label, len(images), epochs, wall, cpu))
            if say:
                print(f"{network} {phase} {label}: {points[-1].per_s:,.0f} images/s", flush=True)
    return points
