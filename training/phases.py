"""What a training phase (DCAE pretraining, Deep SVDD) carries from epoch to epoch: the wrapped
model and its optimiser, the seeded batch order, checkpoints by rank 0, the epoch timer."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from training.checkpoint import Checkpointer
from training.config import TrainConfig
from training.distributed import Dist


def _inner(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    inner = getattr(model, "module", model)
    assert isinstance(inner, nn.Module)
    return inner


def _optimizer(
    params: Iterator[nn.Parameter], cfg: TrainConfig, milestone: int, lr: float
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.MultiStepLR]:
    opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[milestone], gamma=0.1)
    return opt, sched


class Phase:
    """What one training phase checkpoints: the module, optimiser, schedule and batch order.

    `model` is what a step calls (DDP when distributed); `module` the network inside it,
    whose state is saved and restored.
    """

    def __init__(
        self,
        name: str,
        module: nn.Module,
        cfg: TrainConfig,
        milestone: int,
        seed: int,
        dist: Dist,
        lr: float | None = None,
    ) -> None:
        self.name, self.dist = name, dist
        self.model = dist.wrap(module)
        self.module = _inner(self.model)
        self.opt, self.sched = _optimizer(
            self.model.parameters(), cfg, milestone, cfg.lr if lr is None else lr
        )
        self.gen = torch.Generator().manual_seed(seed)

    def resume(self, ckpt: Checkpointer | None) -> tuple[int, list[float], dict[str, Any] | None]:
        """Restores a checkpoint of this phase; returns (epochs done, loss history, state)."""
        saved = None if ckpt is None else ckpt.load(self.name)
        if saved is None:
            return 0, [], None
        self.module.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["optimizer"])
        self.sched.load_state_dict(saved["scheduler"])
        self.gen.set_state(saved["generator"])
        return saved["epoch"], list(saved["history"]), saved

    def checkpoint(
        self,
        ckpt: Checkpointer | None,
        epoch: int,
        total: int,
        history: list[float],
        **extra: object,
    ) -> None:
        """Rank 0 saves after the epochs the checkpointer asks for; the others go on."""
        if ckpt is None or not self.dist.is_main or not ckpt.due(epoch, total):
            return
        ckpt.save(
            {
                "phase": self.name,
                "epoch": epoch,
                "model": self.module.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "generator": self.gen.get_state(),
                "history": history,
                **extra,
            }
        )

    def finish(self, target: nn.Module) -> None:
        """Rank 0's BN statistics on every rank, then the trained weights into `target`."""
        self.dist.sync_buffers(self.module)
        if self.module is not target:  # CUDA: the SyncBatchNorm copy trained in its place
            target.load_state_dict(self.module.state_dict())


def epoch_bar(desc: str, start: int, total: int, progress: bool) -> tqdm:
    return tqdm(
        range(start, total),
        desc=desc,
        initial=start,
        total=total,
        file=sys.stderr,
        disable=not progress,
        unit="epoch",
        dynamic_ncols=True,
        leave=False,
    )


def mean_over(total: float, n: int, dist: Dist) -> float:
    """An epoch's summed loss over all ranks, per training row."""
    return float(dist.sum(torch.tensor([total], dtype=torch.float64))[0]) / n


class EpochTimer:
    """Mean wall time of the timed blocks (epochs), excluding checkpoint writes."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.times.append(time.perf_counter() - self._t0)

    @property
    def mean(self) -> float:
        return sum(self.times) / len(self.times) if self.times else math.nan
