"""Seconds per epoch of DCAE pretraining and Deep SVDD training on 6,000 Fashion-MNIST images:
our training loop (training/deepsvdd.py: uint8 rows, each batch preprocessed as it is drawn)
against a per-sample Dataset + DataLoader loop.

Run from the repository root: `.venv/bin/python -m bench.train_speed --help`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bench.train_speed.report import (
    LOOPS,
    NORMAL_CLASS,
    PHASES,
    Times,
    load_average,
    machine,
    write_report,
)
from training import preprocess
from training.batches import Uint8Images
from training.config import TrainConfig
from training.data import load_dataset
from training.deepsvdd import init_center_c, pretrain_dcae, sq_dist, train_deepsvdd
from training.networks import Autoencoder, Encoder, NetConfig, make_config
from training.pipeline import seed_everything

OUT = Path(__file__).resolve().parent


class PerSampleImages(Dataset[torch.Tensor]):
    """The textbook pipeline: each item is converted and preprocessed on access."""

    def __init__(self, images: np.ndarray, pre: preprocess.Preprocess) -> None:
        self.images = images  # uint8 (N, H, W, C)
        self.pre = pre

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        with torch.no_grad():
            return self.pre(preprocess.to_unit_tensor(self.images[i : i + 1]))[0]  # (C, H, W)


class TextbookEncoder(Encoder):
    """The encoder as a first version writes it: conv -> BN -> leaky ReLU -> pool (ours pools
    before the activation, which is exact and cheaper; see training/networks.py)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns, strict=True):
            x = F.max_pool2d(F.leaky_relu(bn(conv(x)), self.cfg.leaky_slope), 2)
        return self.fc(x.flatten(1))


def loader_for(images: np.ndarray, pre: preprocess.Preprocess, cfg: TrainConfig) -> DataLoader:
    gen = torch.Generator().manual_seed(cfg.seed)
    return DataLoader(
        PerSampleImages(images, pre),
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=0,
        generator=gen,
    )


def optimiser(
    params: Iterator[nn.Parameter], cfg: TrainConfig, milestone: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.MultiStepLR]:
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, [milestone], gamma=0.1)


def timed_epochs(
    module: nn.Module,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    loader: DataLoader,
    cfg: TrainConfig,
    milestone: int,
) -> Callable[[], tuple[float, float]]:
    """One epoch per call minimising `loss_of(batch)` over the DataLoader with Adam and its
    milestone schedule, as training does it; returns (wall, CPU) seconds."""
    opt, sched = optimiser(module.parameters(), cfg, milestone)

    def epoch() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        module.train()
        total = 0.0
        for xb in loader:
            loss = loss_of(xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
        sched.step()
        return time.perf_counter() - t0, time.process_time() - c0

    return epoch


def dataloader_dcae_epochs(
    net_cfg: NetConfig, loader: DataLoader, cfg: TrainConfig
) -> Callable[[], tuple[float, float]]:
    """One DCAE epoch per call over the DataLoader, as pretrain_dcae does it; returns
    (wall, CPU) seconds."""
    ae = Autoencoder(net_cfg)
    ae.encoder = TextbookEncoder(net_cfg)

    def loss_of(xb: torch.Tensor) -> torch.Tensor:
        return ((ae(xb) - xb) ** 2).sum(dim=(1, 2, 3)).mean()

    return timed_epochs(ae, loss_of, loader, cfg, cfg.pretrain_milestone)


def dataloader_svdd_epochs(
    net: Encoder, c: torch.Tensor, loader: DataLoader, cfg: TrainConfig
) -> Callable[[], tuple[float, float]]:
    """One one-class Deep SVDD epoch per call over the DataLoader; returns (wall, CPU) seconds."""
    return timed_epochs(net, lambda xb: sq_dist(net(xb), c).mean(), loader, cfg, cfg.milestone)


def loader_only_epoch(loader: DataLoader) -> float:
    """Seconds to iterate the DataLoader once without training: its share of an epoch."""
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def measure(images: np.ndarray, warmup: int, epochs: int) -> tuple[Times, list[float]]:
    """Per-epoch wall and CPU seconds of each (phase, loop), the epochs of the two loops
    interleaved so that load from other processes falls on both alike; warm-up dropped.

    CPU time (this process, all threads) is less inflated than wall time on a shared machine.
    Our loop's wall time is its own epoch timer; its CPU time is that of the call,
    less, for Deep SVDD, a separately timed computation of c (the call starts with it).
    """
    seed_everything(0)
    net_cfg = make_config("mnist", 1, 28, 28)
    pre = preprocess.fit_preprocess(images)
    x = Uint8Images(images, pre, "cpu")  # what `deepsvdd train` indexes
    one = TrainConfig(epochs=1, pretrain_epochs=1)
    loader = loader_for(images, pre, one)
    times: Times = {(p, lp, k): [] for p in PHASES for lp in LOOPS for k in ("wall", "cpu")}

    def record(phase: str, memory: tuple[float, float], dataloader: tuple[float, float]) -> None:
        for loop, (wall, cpu) in zip(LOOPS, (memory, dataloader), strict=True):
            times[(phase, loop, "wall")].append(wall)
            times[(phase, loop, "cpu")].append(cpu)
        print(
            f"{phase} epoch: ours {memory[0]:.2f} s ({memory[1]:.2f} CPU s), "
            f"DataLoader {dataloader[0]:.2f} s ({dataloader[1]:.2f} CPU s)",
            flush=True,
        )

    dl_dcae = dataloader_dcae_epochs(net_cfg, loader, one)
    encoder = Encoder(net_cfg)
    for i in range(warmup + epochs):
        c0 = time.process_time()
        encoder, _, wall = pretrain_dcae(net_cfg, x, TrainConfig(pretrain_epochs=1, seed=i))
        record("DCAE", (wall, time.process_time() - c0), dl_dcae())

    net_mem, net_dl = Encoder(net_cfg), TextbookEncoder(net_cfg)
    net_mem.load_state_dict(encoder.state_dict())
    net_dl.load_state_dict(encoder.state_dict())
    dl_svdd = dataloader_svdd_epochs(net_dl, init_center_c(net_dl, x), loader, one)
    for i in range(warmup + epochs):
        c0 = time.process_time()
        init_center_c(net_mem, x)
        c1 = time.process_time()
        state = train_deepsvdd(net_mem, x, TrainConfig(epochs=1, seed=i))
        cpu = time.process_time() - c1 - (c1 - c0)
        record("Deep SVDD", (state.seconds_per_epoch["train"], cpu), dl_svdd())

    loader_only = [loader_only_epoch(loader) for _ in range(warmup + epochs)][warmup:]
    return {k: v[warmup:] for k, v in times.items()}, loader_only


KERNEL_GROUPS = {
    "convolution (forward, backward)": ("convolution",),
    "BatchNorm (forward, backward)": ("batch_norm",),
    "max-pool (forward, backward)": ("max_pool",),
    "leaky ReLU (forward, backward)": ("leaky_relu",),
    "Adam step": ("Adam", "_foreach", "addcdiv", "lerp"),
}


def kernel_shares(images: np.ndarray, epochs: int = 2) -> dict[str, float]:
    """Share of our Deep SVDD epoch's CPU time per kind of operator (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    pre = preprocess.fit_preprocess(images)
    data = Uint8Images(images, pre, "cpu")
    net = Encoder(make_config("mnist", 1, 28, 28))
    train_deepsvdd(net, data, TrainConfig(epochs=1))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_deepsvdd(net, data, TrainConfig(epochs=epochs))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = {
        group: sum(e.self_cpu_time_total for e in events if any(k in e.key for k in keys)) / total
        for group, keys in KERNEL_GROUPS.items()
    }
    return {**shares, "everything else": 1.0 - sum(shares.values())}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.train_speed", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per loop (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs first (default 1)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: see bench/README.md)"
    )
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX folder")
    p.add_argument("--out", type=Path, default=OUT, help="output folder (bench/train_speed)")
    p.add_argument("--profile", action="store_true", help="add the operator shares of an epoch")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.warmup < 0:
        p.error("--epochs must be at least 1 and --warmup at least 0")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    info = {"load_before": load_average(), "date": dt.datetime.now().isoformat(timespec="minutes")}
    started = time.perf_counter()
    data = load_dataset("fashion-mnist", args.data_dir)
    images = data.x_train[data.y_train == NORMAL_CLASS]
    times, loader_only = measure(images, args.warmup, args.epochs)
    busy = load_before > 0.5
    info |= {
        "load_after": load_average(),
        "load_note": (
            "Other jobs were running on the machine during the run (the load before it started "
            "was already above 0.5): wall times are inflated and noisy, CPU times less so; "
            "interleaving the two loops' epochs spreads the load over both."
            if busy
            else "The machine was otherwise idle when the run started."
        ),
        "wall": f"{time.perf_counter() - started:.0f}",
        "timed": str(args.epochs),
        "warmup": str(args.warmup),
        "command": shlex.join([".venv/bin/python", "-m", "bench.train_speed", *argv]),
        **machine(),
    }
    if args.profile:
        info["shares"] = json.dumps(kernel_shares(images))
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out, times, loader_only, len(images), info)
    print(f"wrote {args.out / 'train_speed.md'} and {args.out / 'train_speed.png'}")
