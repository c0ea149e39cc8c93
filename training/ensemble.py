"""An ensemble of Deep SVDD networks in one graph (`deepsvdd train --ensemble K`, `--members`).

The members share the images, preprocessing and hold-out. `--members dcae:identity,rotation:
rotations` names their pretraining and transformations (default: one, the run's own flags);
`--ensemble K` repeats that list K times, the i-th repeat with seed + i, so the members of an
`--ensemble K` differ in their seed only (initialisation and batch order). Member m's squared
distance d_m is divided by q_m, the median of
its scores on the held-out normal images, so that no member dominates by scale, and the
ensemble's score is the sum: sum_m d_m / q_m. Written as one network,

    embedding = [phi_1(x) / sqrt(q_1), ..., phi_K(x) / sqrt(q_K)]
    centre    = [c_1 / sqrt(q_1), ..., c_K / sqrt(q_K)]

the score is again the squared distance of the embedding to the centre, so the model file
keeps its contract and the service serves it unchanged. Each member keeps the collapse
guards (no bias, no affine BatchNorm, an eps-pushed centre); the scaling is a constant.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from training.batches import Images
from training.config import NO_PRETRAINING, TrainConfig, parse_member
from training.deepsvdd import TrainState, score
from training.transforms import out_dim

# A member whose held-out median is this small (a degenerate member) is not scaled up by more
# than 1 / MIN_SCALE: the ensemble then stays finite.
MIN_SCALE = 1e-12


def member_configs(cfg: TrainConfig) -> tuple[TrainConfig, ...]:
    """The configuration of each member: `cfg.members` (or cfg itself), `cfg.ensemble` times,
    the i-th time with seed + i."""
    specs = [parse_member(m) for m in (cfg.members or (cfg.kind,))]
    return tuple(
        replace(
            cfg,
            pretrain=task != NO_PRETRAINING,
            pretrain_task=cfg.pretrain_task if task == NO_PRETRAINING else task,  # type: ignore[arg-type]
            transforms=transforms,
            seed=cfg.seed + i,
            ensemble=1,
            members=(),
        )
        for i in range(cfg.ensemble)
        for task, transforms in specs
    )


class Ensemble(nn.Module):
    """The members side by side, each output scaled by 1 / sqrt(q_m): (N, sum of p_m)."""

    weight: torch.Tensor

    def __init__(self, members: list[nn.Module], medians: list[float]) -> None:
        super().__init__()
        if len(members) != len(medians) or not members:
            raise ValueError("an ensemble needs one held-out median per member, and a member")
        self.members = nn.ModuleList(members)
        dims = [out_dim(m) for m in members]
        scale = [1.0 / max(q, MIN_SCALE) ** 0.5 for q in medians]
        weight = torch.cat([torch.full((d,), s) for d, s in zip(dims, scale, strict=True)])
        self.register_buffer("weight", weight)
        self.out_dim = sum(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([member(x) for member in self.members], dim=1) * self.weight


def combine(members: list[TrainState], holdout: Images) -> tuple[TrainState, list[float]]:
    """One TrainState for the members: the Ensemble network, its centre, and the members'
    held-out medians q_m. Raises on an objective with a radius (one-class only)."""
    if any(m.R is not None for m in members):
        raise ValueError("--ensemble needs the one-class objective (a radius per member)")
    medians = []
    for m in members:
        m.net.cpu().eval()
        medians.append(float(torch.median(score(m.net, m.c.cpu(), holdout))))
    net = Ensemble([m.net for m in members], medians).eval()
    c = torch.cat([m.c.cpu() for m in members]) * net.weight
    history = {f"member{i}": m.history["train"] for i, m in enumerate(members)}
    return TrainState(net, c, None, history, dict(members[0].seconds_per_epoch)), medians
