"""LeNet-type Deep SVDD encoders and their DCAE decoders, as in the paper's section 4.

No bias terms anywhere and BatchNorm without affine parameters: a learned shift would let
the network map every input onto the centre c (hypersphere collapse, section 3.3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.config import ARCHITECTURES

BN_EPS = 1e-4


@dataclass(frozen=True)
class NetConfig:
    """Everything that rebuilds a network: stored in checkpoints and model metadata."""

    arch: str
    channels: int
    height: int
    width: int
    filters: tuple[int, ...]
    rep_dim: int
    leaky_slope: float = 0.1

    @property
    def bottom(self) -> tuple[int, int]:
        """Spatial size after the pooling stages."""
        scale = 2 ** len(self.filters)
        return self.height // scale, self.width // scale

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "filters": list(self.filters)}


def make_config(
    arch: str, channels: int, height: int, width: int, leaky_slope: float = 0.1
) -> NetConfig:
    """Builds a config, checking that the input survives the network's pooling stages."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown network {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    filters, rep_dim = ARCHITECTURES[arch]
    scale = 2 ** len(filters)
    if height % scale or width % scale:
        raise ValueError(
            f"image size {height}x{width} does not fit the {arch} network: height and width "
            f"must be positive multiples of {scale}"
        )
    if height < scale or width < scale:
        raise ValueError(f"image size {height}x{width} is smaller than {scale}x{scale}")
    return NetConfig(arch, channels, height, width, filters, rep_dim, leaky_slope)


def _bn(n: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(n, eps=BN_EPS, affine=False)


class Encoder(nn.Module):
    """phi: conv 5x5 (pad 2) -> BN -> leaky ReLU -> 2x2 max-pool per module, then dense.

    The activation is applied after the pool: leaky ReLU is strictly increasing, so it
    commutes with max-pooling (the same values and gradients) and touches a quarter of them.
    """

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ins = (cfg.channels, *cfg.filters[:-1])
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, 5, padding=2, bias=False) for i, o in zip(ins, cfg.filters, strict=True)
        )
        self.bns = nn.ModuleList(_bn(o) for o in cfg.filters)
        h, w = cfg.bottom
        self.fc = nn.Linear(cfg.filters[-1] * h * w, cfg.rep_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns, strict=True):
            x = F.leaky_relu(F.max_pool2d(bn(conv(x)), 2), self.cfg.leaky_slope)
        return self.fc(x.flatten(1))  # (N, rep_dim)


class Decoder(nn.Module):
    """Mirror of the encoder: dense, then upsample -> conv -> BN -> leaky ReLU; sigmoid out."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, w = cfg.bottom
        self.fc = nn.Linear(cfg.rep_dim, cfg.filters[-1] * h * w, bias=False)
        self.bn0 = _bn(cfg.filters[-1])
        rev = cfg.filters[::-1]
        outs = (*rev[1:], cfg.channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, 5, padding=2, bias=False) for i, o in zip(rev, outs, strict=True)
        )
        self.bns = nn.ModuleList(_bn(o) for o in rev[1:])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, w = self.cfg.bottom
        slope = self.cfg.leaky_slope
        x = self.fc(z).view(z.shape[0], self.cfg.filters[-1], h, w)
        x = F.leaky_relu(self.bn0(x), slope)
        for i, conv in enumerate(self.convs):
            x = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            if i < len(self.bns):
                x = F.leaky_relu(self.bns[i](x), slope)
        return torch.sigmoid(x)  # (N, C, H, W) in (0, 1)


class Autoencoder(nn.Module):
    """DCAE used for pretraining; its encoder initialises Deep SVDD."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
