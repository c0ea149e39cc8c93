"""Intensity bands: what the random encoder's features miss about a soft stain.

A stain shifts the local brightness over a region of 10-20 px without changing the texture
in it. The encoder's features, dominated by the texture, hardly move; differences of Gaussian
blurs of the image itself do. Three bands per channel (the image minus its 1.5-px blur, the
1.5-px minus the 4-px blur, the 4-px minus the 12-px blur: fine detail, small blobs, larger
blobs), read at the centres of the 16-px patches of the map's grid, make a third view that is
scored like the others: whitened, nearest normal band vector, standardised.

On the tuning surfaces (six runs, image score over the 16 largest cells) neither leaving the
fine band out (scratches 0.96 to 0.93, faint lines 0.57 to 0.55, stains 0.67 to 0.68) nor a
fourth band, the 12-px minus the 24-px blur (holes 0.98 to 0.96, the rest within 0.02),
did better than these three. Nor did local minima and maxima of the image over 9, 17 and 25 px
as a view of their own (a stain lifts the darkest gaps of a texture): on pattern's two runs its
normal test crops passed q0.95 92% of the time (without it: 22-25%), and its stains fell from
0.93-0.96 to 0.76-0.79, so it went no further.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.nn import functional as F

from training.patch.network import STAGE_PATCH, STRIDE, grid_shape

SIGMAS = (1.5, 4.0, 12.0)  # px: the Gaussian blurs whose differences are the bands
# Band deviations are floored here (the preprocessed image has unit deviation), so that a
# constant image has a finite texture descriptor, far from any textured one.
TEXTURE_FLOOR = 1e-3


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian over +-3 sigma."""
    r = math.ceil(3 * sigma)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-(x**2) / (2 * sigma * sigma))
    return (k / k.sum()).float()


def texture(bands: torch.Tensor) -> torch.Tensor:
    """(N, B, H, W) full-resolution bands -> (N, B): the log deviation of each over the image,
    what training/patch/texture.py scores."""
    return torch.log(bands.flatten(2).std(dim=2) + TEXTURE_FLOOR)


class Bands(nn.Module):
    """(N, C, H, W) preprocessed image -> (N, 3C, h, w): the bands at the centres of the
    16-px patches every STRIDE px (the grid of `grid_shape(H, W, 16)`)."""

    def __init__(self, channels: int, sigmas: tuple[float, ...] = SIGMAS) -> None:
        super().__init__()
        self.channels = channels
        self.sigmas = sigmas
        for i, s in enumerate(sigmas):
            k = gaussian_kernel(s)
            self.register_buffer(f"row{i}", k.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1))
            self.register_buffer(f"col{i}", k.reshape(1, 1, -1, 1).repeat(channels, 1, 1, 1))

    def blur(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Separable blur by the `i`-th sigma, edges repeated outwards (any image size)."""
        row, col = getattr(self, f"row{i}"), getattr(self, f"col{i}")
        r = (row.shape[3] - 1) // 2
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), row, groups=self.channels)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), col, groups=self.channels)

    def full(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 3C, H, W): the bands at every pixel."""
        blurs = [x] + [self.blur(x, i) for i in range(len(self.sigmas))]
        return torch.cat([a - b for a, b in itertools.pairwise(blurs)], dim=1)

    @staticmethod
    def at_centres(bands: torch.Tensor) -> torch.Tensor:
        """(N, 3C, H, W) bands -> (N, 3C, h, w) at the 16-px patches' centres."""
        centre = STAGE_PATCH // 2
        h, w = grid_shape(bands.shape[2], bands.shape[3], STAGE_PATCH)
        return bands[:, :, centre::STRIDE, centre::STRIDE][:, :, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.at_centres(self.full(x))
