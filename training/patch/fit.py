"""Training the patch encoder from scratch on the normal images alone, by one of two objectives
(training.config.PATCH_OBJECTIVES), with Adam:
- `synthetic`: finding, patch by patch, synthetic local anomalies made from the normal images
  themselves (training/patch/synthetic.py);
- `position`: Patch SVDD's, the relative-position pretext plus LAMBDA x SVDD', patch pairs
  drawn afresh at every step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from training.config import PATCH_OBJECTIVES
from training.data.rows import ImageArray
from training.patch.losses import PositionHead, position_loss, svdd_prime
from training.patch.network import PatchEncoder, PatchNetConfig
from training.patch.sampling import PairGeometry, jitter_pairs, position_pairs
from training.patch.scoring import Standardise
from training.patch.synthetic import AnomalyHeads, synthetic_loss
from training.phases import epoch_bar

IMAGES_PER_STEP = 16
PAIRS_PER_IMAGE = 4  # position pairs and SVDD' pairs each, per image and step
PATCH_LR = 1e-3
LAMBDA = 0.1  # weight of SVDD' against the position term
WEIGHT_DECAY = 1e-6


@dataclass(frozen=True)
class PatchFit:
    """The trained encoder and what training measured."""

    encoder: PatchEncoder
    seconds: float
    losses: list[float]  # mean loss per epoch
    # the position pretext's accuracy over the last epoch (None: none ran, or another objective)
    position_accuracy: float | None


def standardise_from(images: ImageArray, chunk: int = 256) -> Standardise:
    """Per-channel mean and standard deviation of the training images' pixels / 255."""
    total = sq = 0.0
    count = 0
    for s in range(0, len(images), chunk):
        x = np.asarray(images[s : s + chunk], dtype=np.float64) / 255.0  # (B, H, W, C)
        total = total + x.sum(axis=(0, 1, 2))
        sq = sq + (x**2).sum(axis=(0, 1, 2))
        count += x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    return Standardise(torch.from_numpy(mean), torch.from_numpy(std))


def to_batch(images: ImageArray, rows: np.ndarray, pre: Standardise, device: str) -> torch.Tensor:
    """uint8 rows (B, H, W, C) -> preprocessed float32 (B, C, H, W) on `device`."""
    u8 = torch.from_numpy(np.asarray(images[rows])).to(device)
    with torch.no_grad():
        return pre(u8.permute(0, 3, 1, 2).float() / 255.0)


def _step(
    encoder: PatchEncoder,
    head: PositionHead,
    x: torch.Tensor,
    geo: PairGeometry,
    gen: torch.Generator,
) -> tuple[torch.Tensor, float]:
    """The loss on fresh pairs from images `x` (each repeated PAIRS_PER_IMAGE times), and the
    share of positions guessed right."""
    x = x.repeat_interleave(PAIRS_PER_IMAGE, dim=0)
    first, second, labels = position_pairs(x, geo, gen)
    near, far = jitter_pairs(x, geo, gen)
    f = encoder.embed(torch.cat([first, second, near, far]))
    f1, f2, f3, f4 = f.chunk(4)
    logits = head(f1, f2)
    loss = position_loss(logits, labels) + LAMBDA * svdd_prime(f3, f4)
    return loss, float((logits.argmax(dim=1) == labels).float().mean())


def train_patch_encoder(
    net_cfg: PatchNetConfig,
    images: ImageArray,
    pre: Standardise,
    geo: PairGeometry,
    epochs: int,
    seed: int,
    device: str,
    progress: bool,
    objective: str = "synthetic",
) -> PatchFit:
    """`epochs` passes over the images in steps of IMAGES_PER_STEP images by `objective` (0:
    the random initial encoder), then BatchNorm's statistics over the whole training images."""
    if objective not in PATCH_OBJECTIVES:
        raise ValueError(f"unknown patch objective {objective!r}; choose one of {PATCH_OBJECTIVES}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    pre = pre.to(device)
    encoder = PatchEncoder(net_cfg).to(device)
    head: torch.nn.Module
    if objective == "position":
        head = PositionHead(net_cfg.dim, slope=net_cfg.leaky_slope).to(device)
    else:
        head = AnomalyHeads(encoder).to(device)
    params = [*encoder.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=PATCH_LR, weight_decay=WEIGHT_DECAY)
    order = np.random.default_rng(seed)
    started, losses, accuracy = time.perf_counter(), [], None
    for _ in epoch_bar(f"train patch encoder ({objective})", 0, epochs, progress):
        encoder.train()
        total, hits, steps = 0.0, 0.0, 0
        for rows in np.array_split(order.permutation(len(images)), _steps(len(images))):
            x = to_batch(images, np.sort(rows), pre, device)
            if isinstance(head, PositionHead):
                loss, hit = _step(encoder, head, x, geo, gen)
                hits += hit
            else:
                loss = synthetic_loss(encoder, head, x, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
        losses.append(total / steps)
        accuracy = hits / steps if isinstance(head, PositionHead) else None
    refit_batchnorm(encoder, images, pre, device)
    return PatchFit(encoder, time.perf_counter() - started, losses, accuracy)


@torch.no_grad()
def refit_batchnorm(
    encoder: PatchEncoder, images: ImageArray, pre: Standardise, device: str
) -> None:
    """BatchNorm's statistics from the whole training images, the inputs the exported graph
    sees, averaged over steps of IMAGES_PER_STEP images; leaves the encoder in eval mode."""
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average
    encoder.train()
    for s in range(0, len(images), IMAGES_PER_STEP):
        encoder(to_batch(images, np.arange(s, min(s + IMAGES_PER_STEP, len(images))), pre, device))
    for bn in norms:
        bn.momentum = 0.1
    encoder.eval()


def _steps(n_images: int) -> int:
    return max(1, round(n_images / IMAGES_PER_STEP))
