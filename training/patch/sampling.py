"""Patch pairs for the two training terms, drawn from a batch of whole images.

Position pairs: a patch and one of its 8 neighbours on a 3x3 grid (spacing `step`, jittered),
labelled with the neighbour's index. SVDD' pairs: a patch and the patch a few px away.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The 8 neighbours of a 3x3 grid, row-major: (dy, dx) in units of the grid's step.
NEIGHBOURS = torch.tensor(
    [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
)


@dataclass(frozen=True)
class PairGeometry:
    """How far apart a patch's neighbours lie (`step`) and how much every offset is jittered."""

    patch_size: int
    step: int
    jitter: int


def min_side(patch_size: int) -> int:
    """The smallest image side that holds a patch and a neighbour half a patch away, jittered."""
    return patch_size + patch_size // 2 + max(1, patch_size // 8)


def geometry(patch_size: int, side: int | None = None) -> PairGeometry:
    """Neighbours a patch and an eighth apart (Patch SVDD's gap), jittered by an eighth of a
    patch; in an image too small for that (`side`), closer, down to half a patch apart."""
    jitter = max(1, patch_size // 8)
    step = patch_size + patch_size // 8
    if side is not None:
        step = max(patch_size // 2, min(step, side - patch_size - jitter))
    return PairGeometry(patch_size, step, jitter)


def crop(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) images and (B,) top-left corners -> (B, C, size, size) patches."""
    ys, xs = ys.to(x.device), xs.to(x.device)
    span = torch.arange(size, device=x.device)
    rows = (ys[:, None] + span)[:, :, None]  # (B, size, 1)
    cols = (xs[:, None] + span)[:, None, :]  # (B, 1, size)
    batch = torch.arange(len(x), device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, size, size)


def _uniform(lo: torch.Tensor, hi: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """An integer in [lo, hi] per element."""
    u = torch.rand(lo.shape, generator=gen)
    return lo + (u * (hi - lo + 1).float()).long().clamp_max(hi - lo)


def _corners(offset: torch.Tensor, limit: int, gen: torch.Generator) -> torch.Tensor:
    """First corners such that both the corner and corner + offset lie in [0, limit]."""
    lo = (-offset).clamp_min(0)
    hi = limit - offset.clamp_min(0)
    return _uniform(lo, hi, gen)


def position_pairs(
    x: torch.Tensor, geo: PairGeometry, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One (patch, neighbour, neighbour's index 0..7) per image of `x`."""
    n, _, h, w = x.shape
    label = torch.randint(len(NEIGHBOURS), (n,), generator=gen)
    jitter = torch.randint(-geo.jitter, geo.jitter + 1, (n, 2), generator=gen)
    offset = NEIGHBOURS[label] * geo.step + jitter  # (n, 2)
    p = geo.patch_size
    ys, xs = _corners(offset[:, 0], h - p, gen), _corners(offset[:, 1], w - p, gen)
    first = crop(x, ys, xs, p)
    second = crop(x, ys + offset[:, 0], xs + offset[:, 1], p)
    return first, second, label.to(x.device)


def jitter_pairs(
    x: torch.Tensor, geo: PairGeometry, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One (patch, the patch up to `geo.jitter` px away) per image of `x`."""
    n, _, h, w = x.shape
    offset = torch.randint(-geo.jitter, geo.jitter + 1, (n, 2), generator=gen)
    p = geo.patch_size
    ys, xs = _corners(offset[:, 0], h - p, gen), _corners(offset[:, 1], w - p, gen)
    return crop(x, ys, xs, p), crop(x, ys + offset[:, 0], xs + offset[:, 1], p)
