"""AnoGAN (Schlegl et al. 2017), the paper's generative baseline: a DCGAN on the normal class,
and an anomaly score found by gradient descent in its latent space."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LATENT_DIM = 256  # the Deep SVDD paper's choice, after Metz et al. (2017)
LAMBDA = 0.1  # weight of the discrimination loss in the latent search (Schlegl et al.)


@dataclass(frozen=True)
class AnoGANConfig:
    """The DCGAN's training schedule and the latent search's settings."""

    latent_dim: int = LATENT_DIM
    width: int = 32  # filters of the widest-resolution layer; doubled at each coarser one
    epochs: int = 25
    batch_size: int = 64
    lr: float = 2e-4  # Adam with beta1 0.5, as in DCGAN (Radford et al. 2015)
    search_steps: int = 500
    search_lr: float = 0.01
    search_batch: int = 256
    lam: float = LAMBDA
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("latent_dim", "width", "batch_size", "search_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "search_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if not (self.lr > 0 and self.search_lr > 0):
            raise ValueError("lr and search_lr must be > 0")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _stages(size: int) -> int:
    """Stride-2 stages between the image and the base grid: 28 -> 7 (2), 32 -> 4 (3)."""
    if size % 8 == 0:
        return 3
    if size % 4 == 0:
        return 2
    raise ValueError(f"image size {size} must be a multiple of 4 (28 and 32 are supported)")


def _check_shape(channels: int, height: int, width: int) -> int:
    if height != width:
        raise ValueError(f"AnoGAN's DCGAN takes square images, got {height}x{width}")
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {channels}")
    return _stages(height)


class Generator(nn.Module):
    """DCGAN generator: z -> dense -> (transposed conv 4x4 stride 2, BN, ReLU)* -> sigmoid."""

    def __init__(self, channels: int, size: int, cfg: AnoGANConfig) -> None:
        super().__init__()
        stages = _check_shape(channels, size, size)
        self.base = size // 2**stages
        widths = [cfg.width * 2**i for i in reversed(range(stages))]  # e.g. 128, 64, 32
        self.top = widths[0]
        self.fc = nn.Linear(cfg.latent_dim, self.top * self.base**2, bias=False)
        self.bn0 = nn.BatchNorm1d(self.top * self.base**2)
        layers: list[nn.Module] = []
        for i, o in zip(widths, [*widths[1:], channels], strict=True):
            layers.append(nn.ConvTranspose2d(i, o, 4, stride=2, padding=1, bias=o == channels))
            if o != channels:
                layers += [nn.BatchNorm2d(o), nn.ReLU()]
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.fc(z))).view(len(z), self.top, self.base, self.base)
        return torch.sigmoid(self.deconvs(x))  # (N, C, H, W) in (0, 1), as the preprocessed data


class Discriminator(nn.Module):
    """DCGAN discriminator: (conv 4x4 stride 2, BN but on the first, leaky ReLU 0.2)* -> dense.

    `features` is the last conv block's output, the layer f of AnoGAN's discrimination loss.
    """

    def __init__(self, channels: int, size: int, cfg: AnoGANConfig) -> None:
        super().__init__()
        stages = _check_shape(channels, size, size)
        widths = [cfg.width * 2**i for i in range(stages)]  # e.g. 32, 64, 128
        layers: list[nn.Module] = []
        for j, (i, o) in enumerate(zip([channels, *widths[:-1]], widths, strict=True)):
            layers.append(nn.Conv2d(i, o, 4, stride=2, padding=1, bias=j == 0))
            if j > 0:
                layers.append(nn.BatchNorm2d(o))
            layers.append(nn.LeakyReLU(0.2))
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(widths[-1] * (size // 2**stages) ** 2, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x).flatten(1)  # (N, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x)).squeeze(1)  # (N,) logits


@dataclass
class AnoGAN:
    """A trained DCGAN and the settings its latent search uses."""

    generator: Generator
    discriminator: Discriminator
    cfg: AnoGANConfig
    history: dict[str, list[float]]


def train_anogan(x: torch.Tensor, cfg: AnoGANConfig) -> AnoGAN:
    """Trains the DCGAN on normal images x (N, C, H, W) in [0, 1] with the usual non-saturating
    losses; seeded by cfg.seed (weights, batch order and noise)."""
    if x.dim() != 4 or len(x) < 2:
        raise ValueError(f"x must be (N, C, H, W) with N >= 2, got shape {tuple(x.shape)}")
    _, channels, height, width = x.shape
    _check_shape(channels, height, width)
    torch.manual_seed(cfg.seed)
    g, d = Generator(channels, height, cfg), Discriminator(channels, height, cfg)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)
    history: dict[str, list[float]] = {"d": [], "g": []}
    for _ in range(cfg.epochs):
        g.train()
        d.train()
        d_total = g_total = 0.0
        order = torch.randperm(len(x), generator=gen)
        steps = 0
        for idx in order.split(cfg.batch_size):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            real = x[idx]
            z = torch.randn(len(idx), cfg.latent_dim, generator=gen)
            fake = g(z)
            ones, zeros = torch.ones(len(idx)), torch.zeros(len(idx))
            d_loss = F.binary_cross_entropy_with_logits(
                d(real), ones
            ) + F.binary_cross_entropy_with_logits(d(fake.detach()), zeros)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_loss = F.binary_cross_entropy_with_logits(d(fake), ones)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            d_total += d_loss.item()
            g_total += g_loss.item()
            steps += 1
        history["d"].append(d_total / max(steps, 1))
        history["g"].append(g_total / max(steps, 1))
    g.eval()
    d.eval()
    return AnoGAN(g, d, cfg, history)


def search_loss(model: AnoGAN, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(1 - lambda) ||x - G(z)||_1 + lambda ||f(x) - f(G(z))||_1 per image, (N,)."""
    fake = model.generator(z)
    residual = (x - fake).abs().flatten(1).sum(dim=1)
    with torch.no_grad():
        fx = model.discriminator.features(x)
    discrimination = (fx - model.discriminator.features(fake)).abs().sum(dim=1)
    lam = model.cfg.lam
    return (1 - lam) * residual + lam * discrimination


def anomaly_score(model: AnoGAN, x: torch.Tensor, seed: int | None = None) -> np.ndarray:
    """AnoGAN score of every image of x (N, C, H, W): the search loss after cfg.search_steps
    Adam steps on z, run for cfg.search_batch images at once.

    Each image's z starts from its own seeded draw (seed, default cfg.seed), so a score does
    not depend on the batch it was searched in. The networks stay in eval mode: BatchNorm
    then uses its running statistics, and the images of a batch do not interact.
    """
    cfg = model.cfg
    g, d = model.generator, model.discriminator
    g.eval()
    d.eval()
    for p in (*g.parameters(), *d.parameters()):
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
    z_all = torch.randn(len(x), cfg.latent_dim, generator=gen)
    scores = []
    try:
        for xb, zb in zip(x.split(cfg.search_batch), z_all.split(cfg.search_batch), strict=True):
            z = zb.clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=cfg.search_lr)
            for _ in range(cfg.search_steps):
                loss = search_loss(model, xb, z)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()  # per-image losses are independent: one backward for all
                opt.step()
            with torch.no_grad():
                scores.append(search_loss(model, xb, z))
    finally:
        for p in (*g.parameters(), *d.parameters()):
            p.requires_grad_(True)
    return torch.cat(scores).numpy() if scores else np.empty(0, np.float32)
