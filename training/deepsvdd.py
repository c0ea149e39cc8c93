"""Deep SVDD objectives and the training loops (DCAE pretraining, then Deep SVDD).

Names follow the paper: `c` the fixed centre, `R` the radius, `nu` the outlier fraction.
An epoch is a seeded permutation of the training rows; under torchrun every rank draws the
same one and trains on its share of each batch (training/distributed.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from training.batches import Images, as_images
from training.checkpoint import Checkpointer
from training.config import ONE_CLASS, SOFT_BOUNDARY, Objective, TrainConfig
from training.distributed import Dist
from training.networks import Autoencoder, Encoder, NetConfig
from training.phases import EpochTimer, Phase, epoch_bar, mean_over
from training.precision import Compute, standard_layout
from training.transforms import out_dim

# Paper section 3.3: coordinates of c this close to zero are pushed out to +-eps.
C_EPS = 0.1
# Deep SAD (Ruff et al. 2020): weight of the labelled term, and what keeps 1/dist finite.
SAD_ETA = 1.0
SAD_EPS = 1e-6


@dataclass
class TrainState:
    """What training produced: the network (an Encoder, or a MultiView of one), c, R (None
    for one-class) and a loss history."""

    net: nn.Module
    c: torch.Tensor
    R: float | None
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds_per_epoch: dict[str, float] = field(default_factory=dict)


def batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    yield from perm.split(batch_size)


def shard_batches(
    n: int, batch_size: int, gen: torch.Generator, dist: Dist
) -> Iterator[tuple[torch.Tensor, int]]:
    """(this rank's rows, global batch length) for each batch of the epoch's permutation.

    Every rank draws the same permutation; a batch of `batch_size` is split across ranks, so
    one process and N processes take the same optimisation steps. A last batch with fewer
    rows than ranks is skipped (a rank would get none); one process never skips.
    """
    for batch in batches(n, batch_size, gen):
        if len(batch) >= dist.world:
            yield dist.shard(batch), len(batch)


# Rows per forward pass in eval mode: about this many input values, so that the activations
# of a chunk stay a few tens of MB whatever the image size.
EMBED_VALUES = 2**20


def embed_chunk(data: Images) -> int:
    """How many rows `embed` and the c and R computations pass through the network at once."""
    if len(data) == 0:
        return 1
    first, _ = data[torch.zeros(1, dtype=torch.int64)]
    return max(16, EMBED_VALUES // first[0].numel())


@torch.no_grad()
def embed(net: nn.Module, data: Images | torch.Tensor) -> torch.Tensor:
    """phi(x) for every row in eval mode, (N, rep_dim) on the data's device."""
    data = as_images(data)
    net.eval()
    rows = torch.arange(len(data))
    return torch.cat([net(data[part][0]) for part in rows.split(embed_chunk(data))])


@torch.no_grad()
def _shard_dist(net: nn.Module, data: Images, c: torch.Tensor, dist: Dist) -> torch.Tensor:
    """||phi(x) - c||^2 of the whole training set, each rank embedding every world-th row."""
    net.eval()
    rows = dist.shard(torch.arange(len(data)))
    parts = [sq_dist(net(data[part][0]), c) for part in rows.split(embed_chunk(data))]
    local = torch.cat(parts) if parts else torch.empty(0, device=c.device)
    return dist.gather(local)


@torch.no_grad()
def init_center_c(
    net: nn.Module,
    data: Images | torch.Tensor,
    eps: float = C_EPS,
    dist: Dist | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of the initial outputs on the normal data, pushed away from zero (section 3.3).

    `rows`: the rows to average (default all; Deep SAD leaves its labelled anomalies out).
    Distributed: each rank sums phi over its share of the rows; the sums and counts are
    all-reduced, so every rank gets the same c.
    """
    data, dist = as_images(data), dist or Dist()
    net.eval()
    rows = dist.shard(torch.arange(len(data)) if rows is None else rows)
    chunk = embed_chunk(data)
    sums = [net(data[part][0]).double().sum(dim=0).cpu() for part in rows.split(chunk)]
    local = torch.zeros(out_dim(net) + 1, dtype=torch.float64)
    if sums:
        local[:-1] = torch.stack(sums).sum(dim=0)
    local[-1] = len(rows)
    summed = dist.sum(local)  # (rep_dim + 1,): the sum of phi, then the count
    c = (summed[:-1] / summed[-1]).float().to(data.device)
    small = c.abs() < eps
    c[small & (c < 0)] = -eps
    c[small & (c >= 0)] = eps
    return c


def sq_dist(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return ((z - c) ** 2).sum(dim=1)  # (N,)


def get_radius(dist: torch.Tensor, nu: float) -> float:
    """Optimal R for fixed phi: the (1 - nu) quantile of the distances sqrt(||phi - c||^2)."""
    return float(torch.quantile(dist.detach().sqrt().float(), 1.0 - nu))


def svdd_loss(
    dist: torch.Tensor, objective: Objective, R: float, nu: float, n: float | None = None
) -> torch.Tensor:
    """The objective on a batch; `n` is the divisor of the mean (default: the batch length).

    A rank holding part of a global batch of B rows passes n = B / world: DDP's average of the
    ranks' gradients is then the gradient of the whole batch's mean.
    """
    n = len(dist) if n is None else n
    if objective == ONE_CLASS:
        return dist.sum() / n
    slack = torch.clamp(dist - R**2, min=0.0)
    return R**2 + slack.sum() / (n * nu)


def deepsad_loss(
    dist: torch.Tensor,
    semi_targets: torch.Tensor,
    n: float | None = None,
    eta: float = SAD_ETA,
    eps: float = SAD_EPS,
) -> torch.Tensor:
    """Deep SAD over a batch: dist for unlabelled rows (target 0), eta (dist + eps)^y for
    labelled ones (y = +1 normal, -1 anomaly: pushed out by the inverse distance). `n` is the
    divisor of the mean, as in `svdd_loss`."""
    n = len(dist) if n is None else n
    labelled = eta * (dist + eps) ** semi_targets.to(dist.dtype)
    return torch.where(semi_targets == 0, dist, labelled).sum() / n


def pretrain_dcae(
    cfg_net: NetConfig,
    data: Images | torch.Tensor,
    cfg: TrainConfig,
    ckpt: Checkpointer | None = None,
    progress: bool = False,
    dist: Dist | None = None,
) -> tuple[Encoder, list[float], float]:
    """Trains the autoencoder with the summed squared error; returns its encoder."""
    data = as_images(data)
    ae = Autoencoder(cfg_net).to(data.device)
    history, seconds = pretrain_loop(
        "pretrain DCAE", ae, summed_error, data, cfg, ckpt, progress, dist
    )
    return ae.encoder, history, seconds


def summed_error(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """The DCAE's loss summed over the batch: squared pixel errors summed per image."""
    return ((model(xb).float() - xb) ** 2).sum(dim=(1, 2, 3)).sum()


def pretrain_loop(
    desc: str,
    module: nn.Module,
    summed_loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    data: Images,
    cfg: TrainConfig,
    ckpt: Checkpointer | None,
    progress: bool,
    dist: Dist | None,
) -> tuple[list[float], float]:
    """The pretraining phase's epochs for any pretext task: `summed_loss(model, batch)` is the
    loss summed over this rank's rows, divided here by its share of the global batch (DDP's
    average of the ranks' gradients is then the whole batch's mean). Trains `module` in
    place; returns the loss history (per training row) and seconds per epoch."""
    dist = dist or Dist()
    compute = Compute.of(cfg, data.device)
    compute.place(module)
    phase = Phase(
        "pretrain", module, cfg, cfg.pretrain_milestone, cfg.seed, dist, cfg.pretrain_step
    )
    model, opt = phase.model, phase.opt
    start, history, _ = phase.resume(ckpt)
    timer = EpochTimer()
    bar = epoch_bar(desc, start, cfg.pretrain_epochs, progress)
    for epoch in bar:
        model.train()
        total = 0.0
        with timer:
            for rows, n_batch in shard_batches(len(data), cfg.batch_size, phase.gen, dist):
                xb, _ = data[rows]
                with compute.autocast():  # the losses cast to fp32 themselves
                    loss = summed_loss(model, compute.batch(xb)) / (n_batch / dist.world)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * n_batch / dist.world
            phase.sched.step()
        history.append(mean_over(total, len(data), dist))
        bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
        phase.checkpoint(ckpt, epoch + 1, cfg.pretrain_epochs, history)
    phase.finish(module)
    standard_layout(module)
    return history, timer.mean


def train_deepsvdd(
    net: nn.Module,
    data: Images | torch.Tensor,
    cfg: TrainConfig,
    ckpt: Checkpointer | None = None,
    progress: bool = False,
    dist: Dist | None = None,
    semi_targets: torch.Tensor | None = None,
) -> TrainState:
    """Minimises the one-class or soft-boundary objective with c fixed; with `semi_targets`
    (one per row: 0 unlabelled, +1 labelled normal, -1 labelled anomaly) Deep SAD's.

    `net` is an Encoder or a MultiView (training/transforms.py): a row's distance is then
    summed over its transformations, and so are the objectives built on it."""
    data, dist = as_images(data), dist or Dist()
    compute = Compute.of(cfg, data.device)
    compute.place(net)
    phase = Phase("train", net, cfg, cfg.milestone, cfg.seed + 1, dist)
    model, opt = phase.model, phase.opt
    normal = None if semi_targets is None else torch.nonzero(semi_targets >= 0).flatten().cpu()
    c = init_center_c(phase.module, data, dist=dist, rows=normal)  # fp32; no anomalies
    R = 0.0
    start, history, saved = phase.resume(ckpt)
    if saved is not None:
        c, R = saved["c"].to(data.device), saved["R"]
    soft = cfg.objective == SOFT_BOUNDARY
    timer = EpochTimer()
    bar = epoch_bar(
        "train Deep SVDD" if semi_targets is None else "train Deep SAD", start, cfg.epochs, progress
    )
    for epoch in bar:
        model.train()
        total = 0.0
        with timer:
            for rows, n_batch in shard_batches(len(data), cfg.batch_size, phase.gen, dist):
                xb, _ = data[rows]
                share = n_batch / dist.world
                with compute.autocast():
                    z = model(compute.batch(xb))
                d = sq_dist(z.float(), c)  # fp32 whatever the forward pass's precision
                if semi_targets is None:
                    loss = svdd_loss(d, cfg.objective, R, cfg.nu, share)
                else:
                    loss = deepsad_loss(d, semi_targets[rows.to(semi_targets.device)], share)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * share
            phase.sched.step()
        if soft and epoch + 1 >= cfg.warm_up_epochs:
            # Solved exactly over all training data (the paper's line search every k
            # epochs, with k = 1): the nu-property then holds for the final R.
            dist.sync_buffers(phase.module)
            R = get_radius(_shard_dist(phase.module, data, c, dist), cfg.nu)
        history.append(mean_over(total, len(data), dist))
        bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
        phase.checkpoint(ckpt, epoch + 1, cfg.epochs, history, c=c.cpu(), R=R)
    phase.finish(net)
    if soft:
        R = get_radius(_shard_dist(net, data, c, dist), cfg.nu)
    standard_layout(net)
    net.eval()
    return TrainState(net, c, R if soft else None, {"train": history}, {"train": timer.mean})


def score(net: nn.Module, c: torch.Tensor, data: Images | torch.Tensor) -> torch.Tensor:
    """Anomaly score ||phi(x) - c||^2 for every row."""
    return sq_dist(embed(net, data), c)
