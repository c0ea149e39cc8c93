"""The patch encoder: valid convolutions and pools only, so that one forward over a whole image
gives, at grid cell (i, j), exactly the feature of the patch at (i * STRIDE, j * STRIDE).

No bias terms and BatchNorm without affine parameters, as in Deep SVDD's networks: no learned
shift lets every patch land on one point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

STRIDE = 4  # two 2x2 pools: one grid cell every 4 px
STAGE_PATCH = 16  # px a feature after the second stage sees: two stages of -4 px and /2
BN_EPS = 1e-4


@dataclass(frozen=True)
class PatchNetConfig:
    """Everything that rebuilds a patch encoder."""

    channels: int
    patch_size: int
    widths: tuple[int, int] = (32, 64)  # filters of the two conv stages
    dim: int = 64  # the patch feature's size
    leaky_slope: float = 0.1

    @property
    def last_kernel(self) -> int:
        """The final conv's kernel: what is left of a patch after the two stages."""
        return ((self.patch_size - 4) // 2 - 4) // 2

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "widths": list(self.widths), "stride": STRIDE}


def grid_shape(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Grid cells of a whole image: patches at every STRIDE px that fit inside it."""
    return (height - patch_size) // STRIDE + 1, (width - patch_size) // STRIDE + 1


class PatchEncoder(nn.Module):
    """(N, C, H, W) -> (N, dim, h, w) features, one per patch of the grid; a patch of exactly
    `patch_size` px gives (N, dim, 1, 1)."""

    def __init__(self, cfg: PatchNetConfig) -> None:
        super().__init__()
        if cfg.patch_size < 16 or cfg.patch_size % 4:
            raise ValueError(
                f"patch size must be a multiple of 4 of at least 16, got {cfg.patch_size}"
            )
        a, b = cfg.widths
        self.cfg = cfg
        self.features = nn.Sequential(
            *self._stage(cfg.channels, a, cfg.leaky_slope),
            *self._stage(a, b, cfg.leaky_slope),
            nn.Conv2d(b, cfg.dim, cfg.last_kernel, bias=False),
        )

    @staticmethod
    def _stage(c_in: int, c_out: int, slope: float) -> list[nn.Module]:
        """Two valid 3x3 convs (BatchNorm, leaky ReLU) and a 2x2 max-pool: -4 px, then /2."""
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers += [
                nn.Conv2d(c, c_out, 3, bias=False),
                nn.BatchNorm2d(c_out, eps=BN_EPS, affine=False),
                nn.LeakyReLU(slope),
            ]
        return [*layers, nn.MaxPool2d(2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def scale_sizes(self) -> list[int]:
        """The patch sizes `scales` returns features of, smallest first."""
        if self.cfg.patch_size == STAGE_PATCH:
            return [STAGE_PATCH]
        return [STAGE_PATCH, self.cfg.patch_size]

    def scales(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of the grid of 16-px patches (the second stage's output) and of
        `patch_size` patches (the last conv's), both every STRIDE px; one scale when the
        patch size is 16."""
        stages = self.features[:-1](x)
        last = self.features[-1](stages)
        return [last] if self.cfg.patch_size == STAGE_PATCH else [stages, last]

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, C, p, p) patches -> (B, dim) features."""
        return self.features(patches).flatten(1)
