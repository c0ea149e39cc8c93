"""Synthetic local anomalies made from the normal images themselves, and the per-patch targets
the encoder learns to find them by.

Each image of a batch (but a share left as it is) gets one region replaced by another part of
a normal image: CutPaste's two shapes (Li et al., CVPR 2021), a rotated rectangle of 6-26 px
or a "scar", a thin rotated strip 2-6 px wide and 10-50 px long; its content is a shifted copy
of another image of the batch, its contrast and brightness jittered a little. Nothing in it
comes from outside the normal class: an encoder trained to tell these regions from their
surroundings learns which local structures belong to the normal texture and which do not,
instead of features of random weights. The sizes are in px of the encoder's input, where a
patch feature sees 16 or `patch_size` px.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from training.patch.network import STRIDE, PatchEncoder

UNTOUCHED = 0.15  # share of images left without an anomaly: not every image has one
SCAR_SHARE = 0.5  # share of the planted regions that are scars (the rest rectangles)
SCAR_WIDTH = (2.0, 6.0)  # px
SCAR_LENGTH = (10.0, 50.0)
RECT_SIDE = (6.0, 26.0)  # px, the shorter side; the longer one is 1-1.5x it
GAIN = 0.2  # the pasted content is multiplied by 1 +- GAIN/2 ...
BIAS = 0.6  # ... and shifted by +- BIAS/2 (units of the standardised pixels)
EDGE = 12  # px: region centres keep this far from the image's border
COVERED = 0.02  # a patch is anomalous when more than this share of its pixels is replaced
TRAIN_CROP = 128  # px: larger images train on a random crop of this side (the same per step)


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def plant(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised images (B, C, H, W) -> (images with one synthetic anomaly each, all but
    about UNTOUCHED of them; the float mask (B, 1, H, W) of the replaced pixels)."""
    b, _, h, w = x.shape
    scar = torch.rand(b, generator=gen) < SCAR_SHARE
    width = torch.where(scar, _uniform(gen, b, *SCAR_WIDTH), _uniform(gen, b, *RECT_SIDE))
    ratio = _uniform(gen, b, 1.0, 1.5)
    length = torch.where(scar, _uniform(gen, b, *SCAR_LENGTH), width * ratio)
    angle = _uniform(gen, b, 0.0, math.pi)
    cy = _uniform(gen, b, min(EDGE, h / 2), max(h - EDGE, h / 2))
    cx = _uniform(gen, b, min(EDGE, w / 2), max(w - EDGE, w / 2))
    yy = torch.arange(h, dtype=torch.float32).view(1, h, 1) - cy.view(b, 1, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, w) - cx.view(b, 1, 1)
    cos, sin = angle.cos().view(b, 1, 1), angle.sin().view(b, 1, 1)
    along, across = xx * cos + yy * sin, yy * cos - xx * sin
    inside = (along.abs() <= length.view(b, 1, 1) / 2) & (across.abs() <= width.view(b, 1, 1) / 2)
    inside &= (torch.rand(b, generator=gen) >= UNTOUCHED).view(b, 1, 1)
    mask = inside.unsqueeze(1).to(x.dtype).to(x.device)
    source = torch.randint(b, (b,), generator=gen)
    shift_y = torch.randint(-(h // 2), h // 2 + 1, (b,), generator=gen)
    shift_x = torch.randint(-(w // 2), w // 2 + 1, (b,), generator=gen)
    content = torch.stack(
        [
            torch.roll(x[int(s)], shifts=(int(dy), int(dx)), dims=(1, 2))
            for s, dy, dx in zip(source, shift_y, shift_x, strict=True)
        ]
    )
    gain = (1.0 + _uniform(gen, b, -GAIN / 2, GAIN / 2)).view(b, 1, 1, 1).to(x.device)
    bias = _uniform(gen, b, -BIAS / 2, BIAS / 2).view(b, 1, 1, 1).to(x.device)
    return x * (1 - mask) + (content * gain + bias) * mask, mask


def patch_targets(mask: torch.Tensor, patch: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) targets of the `patch`-px patches every STRIDE px: 1 where more than
    COVERED of the patch's pixels were replaced; cut to the features' `grid`."""
    covered = F.avg_pool2d(mask, patch, stride=STRIDE)
    return (covered > COVERED).to(mask.dtype)[..., : grid[0], : grid[1]]


class AnomalyHeads(nn.Module):
    """One 1x1 conv per scale of the encoder: a patch feature -> the logit that its patch holds a
    synthetic anomaly. Only training uses them; the exported graph scores by distances."""

    def __init__(self, encoder: PatchEncoder) -> None:
        super().__init__()
        cfg = encoder.cfg
        widths = [cfg.widths[1], cfg.dim] if len(encoder.scale_sizes()) == 2 else [cfg.dim]
        self.sizes = encoder.scale_sizes()
        self.convs = nn.ModuleList([nn.Conv2d(c, 1, 1) for c in widths])

    def loss(self, features: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of every scale's patches, the anomalous ones weighted up to
        balance the normal ones (they are a few percent of all patches)."""
        total = torch.zeros((), device=mask.device)
        for conv, size, f in zip(self.convs, self.sizes, features, strict=True):
            logits = conv(f)
            target = patch_targets(mask, size, (logits.shape[2], logits.shape[3]))
            share = target.mean().clamp(1e-3, 1.0)
            weight = (1.0 - share) / share
            total = total + F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
        return total


def random_crop(x: torch.Tensor, gen: torch.Generator, side: int = TRAIN_CROP) -> torch.Tensor:
    """x itself when it is at most `side` px each way; else one random crop of it, the same
    for the whole batch."""
    h, w = x.shape[2], x.shape[3]
    top = int(torch.randint(h - side + 1, (1,), generator=gen)) if h > side else 0
    left = int(torch.randint(w - side + 1, (1,), generator=gen)) if w > side else 0
    return x[:, :, top : top + side, left : left + side]


def synthetic_loss(
    encoder: PatchEncoder, heads: AnomalyHeads, x: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """The loss of one step: a synthetic anomaly planted in each (cropped) image, found per
    patch at every scale."""
    planted, mask = plant(random_crop(x, gen), gen)
    return heads.loss(encoder.scales(planted), mask)
