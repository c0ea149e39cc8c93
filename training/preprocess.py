"""The paper's per-image preprocessing (section 4), as a module so that it is exported inside
the graph.

Global contrast normalisation with the L1 norm (subtract the image's mean, divide by its
mean absolute deviation), then min-max scaling with constants taken over the normal
class's training images after GCN.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modelfile.pixels import to_input
from training.data.rows import ImageArray, release_pages

# Guards a constant image (zero deviation) from a division by zero; real images have
# deviations many orders of magnitude larger, so their values are unchanged.
GCN_EPS = 1e-8
# Pixel values converted at once by the chunked passes (1,337 28x28 grey images, 85 of 64x64
# RGB): each float temporary is 4 MB, small enough that the allocator hands it back.
CHUNK_VALUES = 2**20


def chunk_rows(images: ImageArray) -> int:
    return max(1, CHUNK_VALUES // max(1, int(np.prod(images.shape[1:]))))


def gcn_l1(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> same shape, each image centred and divided by its mean |deviation|."""
    centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
    scale = centred.abs().mean(dim=(1, 2, 3), keepdim=True)
    return centred / scale.clamp_min(GCN_EPS)


class Preprocess(nn.Module):
    """pixels / 255 -> GCN-L1 -> (x - min) / (max - min) with the training constants."""

    lo: torch.Tensor
    hi: torch.Tensor

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        self.register_buffer("lo", torch.tensor(lo, dtype=torch.float32))
        self.register_buffer("hi", torch.tensor(hi, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (gcn_l1(x) - self.lo) / (self.hi - self.lo)


def to_unit_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]: the model file's input."""
    return torch.from_numpy(to_input(images))


def gcn_range(train_images: ImageArray, chunk: int | None = None) -> tuple[float, float]:
    """The smallest and largest value after GCN-L1, read in chunks of `chunk` images
    ((inf, -inf) for no images): min and max combine exactly across chunks and ranks."""
    lo, hi = float("inf"), float("-inf")
    chunk = chunk or chunk_rows(train_images)
    for start in range(0, len(train_images), chunk):
        g = gcn_l1(to_unit_tensor(train_images[start : start + chunk]))
        lo, hi = min(lo, float(g.min())), max(hi, float(g.max()))
        release_pages(train_images)
    return lo, hi


def fit_preprocess(train_images: ImageArray, chunk: int | None = None) -> Preprocess:
    """Computes the min-max constants on the normal training images."""
    return preprocess_from_range(*gcn_range(train_images, chunk))


def preprocess_from_range(lo: float, hi: float) -> Preprocess:
    if not hi > lo:
        raise ValueError("min-max constants are degenerate: every training image is constant")
    return Preprocess(lo, hi)


def apply(pre: Preprocess, images: ImageArray, chunk: int | None = None) -> torch.Tensor:
    """Preprocesses a whole uint8 array at once (baselines, benchmarks; training preprocesses
    each batch instead, training/batches.py)."""
    chunk = chunk or chunk_rows(images)
    with torch.no_grad():
        parts = [pre(to_unit_tensor(images[s : s + chunk])) for s in range(0, len(images), chunk)]
    return torch.cat(parts) if parts else torch.empty(0)
