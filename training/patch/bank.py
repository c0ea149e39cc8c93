"""The memory bank of normal patch features and its greedy k-center coreset (PatchCore's).

The bank holds, in each view of the map (training/patch/scoring.py), every grid patch of the
training images, or an even random share of them per image when that would exceed BANK_LIMIT;
the coreset keeps the `k` vectors that cover it best.

The bank holds the training images as they are. Adding their flips (4 copies) or their
rescalings (by 0.85 and 1.18) did no better on the tuning surfaces (six runs): image AUROCs
moved by at most 0.021 (stains 0.667 to 0.646 with the rescalings), and the false alarms of
normal test crops at q0.95 from 30% to 26% and 23%. Nor did a coreset four times the
default (8,192): every image AUROC within 0.004, false alarms 28%.
"""

from __future__ import annotations

import math

import torch

from training.patch.scoring import PatchViews

# Patch features the coreset is chosen from: k-center costs k passes over them (k x BANK_LIMIT
# x dim multiply-adds: 2048 x 65,536 x 64 = 8.6 G for the defaults, a few seconds).
BANK_LIMIT = 32_768


def per_image(n_images: int, cells: int, limit: int = BANK_LIMIT) -> int:
    """Grid patches kept from each image: all of them, or an even share of `limit`."""
    return min(cells, max(1, math.ceil(limit / max(1, n_images))))


@torch.no_grad()
def bank_features(
    views: PatchViews,
    batches: list[torch.Tensor],
    n_images: int,
    gen: torch.Generator,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per view (`views.names()`), the (M, dim) vectors of the training images' grid patches
    (preprocessed `batches`); and the images' texture descriptors (N, 3C), on the CPU."""
    views.eval()
    kept: list[list[torch.Tensor]] = [[] for _ in views.names()]
    descriptors = []
    for x in batches:
        grids, descriptor = views.read(x)
        descriptors.append(descriptor.cpu())
        for scale, grid in enumerate(grids):
            f = grid.flatten(2).transpose(1, 2)  # (B, h*w, dim)
            take = per_image(n_images, f.shape[1])
            for row in f:
                pick = torch.randperm(len(row), generator=gen)[:take]
                kept[scale].append(row[pick.to(row.device)])
    return [torch.cat(rows) for rows in kept], torch.cat(descriptors)


@torch.no_grad()
def greedy_coreset(features: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of `k` rows of `features` (M, dim) chosen by greedy k-center: each the row
    farthest from those chosen so far, starting from a random row."""
    m = len(features)
    if k >= m:
        return torch.arange(m)
    sq = (features**2).sum(dim=1)  # (M,)
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = int(torch.randint(m, (1,), generator=gen))
    nearest = torch.full((m,), float("inf"), device=features.device)
    for i in range(1, k):
        c = features[chosen[i - 1]]
        d = (sq - 2 * features @ c + sq[chosen[i - 1]]).clamp_min(0)
        nearest = torch.minimum(nearest, d)
        chosen[i] = int(torch.argmax(nearest))
    return chosen
