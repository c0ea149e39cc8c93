"""Running `deepsvdd train` under torchrun: the process group, sharding and the collectives
the training loops need (sums, min/max, gathers); one process without torchrun is world 1.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist
from torch import nn

T = TypeVar("T")
# A collective waiting this long for a peer fails instead of hanging; torchrun usually stops
# the survivors of a failed rank much sooner. Long enough for rank 0 to calibrate and export.
DEFAULT_TIMEOUT_S = 1800.0


class DistributedError(Exception):
    """A rank of a distributed run failed, or the run cannot start (one line, names the rank)."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, world size, its device and the BN choice."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def batchnorm(self) -> str:
        """How BatchNorm statistics are shared across ranks (recorded in the metadata)."""
        if not self.active:
            return "local"
        if self.device.startswith("cuda"):
            return "sync"
        return "rank0-buffers"  # plain BN; DDP broadcasts rank 0's running statistics

    def record(self) -> dict[str, object]:
        backend = "nccl" if self.device.startswith("cuda") else "gloo"
        return {
            "world_size": self.world,
            "backend": backend if self.active else None,
            "batchnorm": self.batchnorm,
        }

    # --- collectives (no-ops in a one-process run) ---------------------------------------

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks of a float64 or float32 tensor (returned on the CPU)."""
        if not self.active:
            return values.cpu()
        out = values.detach().to(self.device).clone()
        torch_dist.all_reduce(out, op=torch_dist.ReduceOp.SUM)
        return out.cpu()

    def min_max(self, lo: float, hi: float) -> tuple[float, float]:
        if not self.active:
            return lo, hi
        t = torch.tensor([-lo, hi], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return -float(t[0]), float(t[1])

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Concatenates every rank's 1-D tensor (shards may differ in length), rank order."""
        if not self.active:
            return values
        local = values.detach().to(self.device)
        size = torch.tensor([len(local)], device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        torch_dist.all_gather(sizes, size)
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros(longest, dtype=local.dtype, device=self.device)
        padded[: len(local)] = local
        parts = [torch.zeros_like(padded) for _ in range(self.world)]
        torch_dist.all_gather(parts, padded)
        return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])

    def share(self, make: Callable[[], T]) -> T:
        """Calls `make` on rank 0 only and hands its (picklable) result to every rank."""
        if not self.active:
            return make()
        box: list[Any] = [make() if self.is_main else None]
        torch_dist.broadcast_object_list(box, src=0, device=self._object_device())
        return box[0]

    def sync_buffers(self, model: nn.Module) -> None:
        """Gives every rank rank 0's BN running statistics (they drift apart between the
        broadcasts DDP makes at the start of each training forward)."""
        if not self.active:
            return
        for buf in model.buffers():
            torch_dist.broadcast(buf.data, src=0)

    def _object_device(self) -> torch.device | None:
        return torch.device(self.device) if self.device.startswith("cuda") else None

    # --- models and data -----------------------------------------------------------------

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module a training step calls: DDP when distributed. On CUDA it wraps a copy
        with SyncBatchNorm, so that `model` keeps plain BatchNorm for export; the trained
        state goes back into it at the end (`Phase.finish`)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if self.device.startswith("cuda"):
            synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
            return DistributedDataParallel(synced, device_ids=[self.local_rank])
        return DistributedDataParallel(model)  # rank 0's buffers go out at every forward

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch (or of any index vector): every world-th."""
        return rows[self.rank :: self.world]


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"environment variable {name}={text!r} is not an integer") from None


def from_environment(device: str) -> Dist:
    """Joins the torchrun job described by RANK, LOCAL_RANK and WORLD_SIZE, if any.

    `device` is "cpu" or "cuda"; on CUDA each local rank takes its own GPU. Without torchrun's
    variables this is a one-process run and nothing is initialised.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Dist(device=device)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"local rank {local_rank} has no GPU: this node has "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    timeout = float(os.environ.get("DEEPSVDD_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(
            "nccl" if device.startswith("cuda") else "gloo",
            rank=rank,
            world_size=world,
            timeout=dt.timedelta(seconds=timeout),
        )
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device)


def _lost_a_peer(exc: Exception) -> bool:
    """Whether a collective failed because another rank went away (gloo, NCCL, timeouts)."""
    if isinstance(exc, torch_dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        mark in text for mark in ("gloo", "NCCL", "Connection closed", "Connection reset")
    )


@contextlib.contextmanager
def joined(device: str) -> Iterator[Dist]:
    """The run's `Dist` for the `with` block; the process group is left at its end.

    A failure on a rank becomes one `DistributedError` line naming the rank; the process then
    exits non-zero and torchrun stops the other ranks (a rank blocked in a collective on a
    dead peer fails by itself after the timeout, DEEPSVDD_DIST_TIMEOUT_S).
    """
    dist = from_environment(device)
    try:
        yield dist
    except Exception as exc:
        if not dist.active or isinstance(exc, DistributedError):
            raise
        message = " ".join(str(exc).split()) or "no message"
        if _lost_a_peer(exc):  # a consequence: the rank that failed first says why
            raise DistributedError(
                f"rank {dist.rank} of {dist.world} stopped: lost contact with another rank "
                f"({message[:160]})"
            ) from exc
        raise DistributedError(
            f"rank {dist.rank} of {dist.world} failed: {type(exc).__name__}: {message}"
        ) from exc
    if dist.active and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
