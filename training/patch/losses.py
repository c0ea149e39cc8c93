"""Patch SVDD's two training terms: SVDD' (a patch's feature near its jittered neighbour's) and
the relative-position pretext (which of the 8 neighbours), whose classifier is not exported."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.patch.sampling import NEIGHBOURS


class PositionHead(nn.Module):
    """Two patch features -> logits over the 8 neighbour positions, from their difference."""

    def __init__(self, dim: int, hidden: int = 128, slope: float = 0.1) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.LeakyReLU(slope),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(slope),
            nn.Linear(hidden, len(NEIGHBOURS)),
        )

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.mlp(first - second)  # (B, 8)


def svdd_prime(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the features of patches a few px apart."""
    return ((first - second) ** 2).sum(dim=1).mean()


def position_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)
