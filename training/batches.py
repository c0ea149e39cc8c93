"""What the training loops index: a batch of row numbers in, `(images, row numbers)` out.

`Uint8Images` keeps the images as uint8 (in memory or memory-mapped) and preprocesses each
batch on the training device with the arithmetic of the exported graph; `TensorImages` holds
an already preprocessed float tensor. The row numbers come back so that per-sample values
(labels, weights) can be looked up for the same images.
"""

from __future__ import annotations

from typing import Protocol

import torch

from training.data.rows import ImageArray, release_pages
from training.preprocess import Preprocess

# A memory-mapped training set hands its pages back after this many bytes have been read:
# a page fault maps its already-cached neighbours too (fault-around, 64 kB), so a random
# row of a few kB can add ten times its size to the resident set.
RELEASE_BYTES = 32 * 2**20


class Images(Protocol):
    """A training set the loops can index with a 1-D tensor of row numbers."""

    device: torch.device

    def __len__(self) -> int: ...

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class TensorImages:
    """Preprocessed images (N, C, H, W) in one float tensor, channels-last on the CPU."""

    def __init__(self, x: torch.Tensor) -> None:
        if x.device.type == "cpu" and x.dim() == 4:
            # oneDNN's convolutions then skip a reordering per layer (training/precision.py).
            x = x.contiguous(memory_format=torch.channels_last)
        self.x = x
        self.device = x.device

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[rows], rows


class Uint8Images:
    """uint8 (N, H, W, C) images, each batch turned into float32 / 255, GCN-L1 and min-max.

    A batch goes to the device as uint8 (a quarter of float32's bytes); NHWC permuted to
    NCHW is already the channels-last layout the CPU convolutions prefer.
    """

    def __init__(self, images: ImageArray, pre: Preprocess, device: str | torch.device) -> None:
        self.images = images
        self.device = torch.device(device)
        self.pre = pre.to(self.device)
        self._unreleased = 0  # bytes read since the memory map's pages were last dropped

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u8 = torch.from_numpy(self.images[rows.numpy()])  # (B, H, W, C)
        self._unreleased += u8.numel()
        if self._unreleased >= RELEASE_BYTES:
            release_pages(self.images)
            self._unreleased = 0
        u8 = u8.to(self.device, non_blocking=True)
        with torch.no_grad():
            x = self.pre(u8.permute(0, 3, 1, 2).float() / 255.0)  # (B, C, H, W)
        return x, rows


def as_images(data: Images | torch.Tensor) -> Images:
    """Accepts a preprocessed tensor where a training set is expected."""
    return TensorImages(data) if isinstance(data, torch.Tensor) else data
