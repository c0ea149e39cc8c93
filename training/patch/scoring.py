"""The exported patch model: pixels / 255 in; the image score, the mean patch feature and the
anomaly map out, the map being each grid patch's squared distance to its nearest coreset feature.
"""

from __future__ import annotations

import torch
from torch import nn

from training.patch.network import PatchEncoder

# The image score from the map: its largest cell (the most anomalous patch).
SCORE_RULE = "max over the anomaly map of min_b ||phi(patch) - b||^2, b in the coreset"


class Standardise(nn.Module):
    """pixels / 255 -> (x - mean) / std per channel, with the training images' constants."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        if not bool((std > 0).all()):
            raise ValueError("every training image is constant: no contrast to learn from")
        self.register_buffer("mean", mean.detach().float().reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.detach().float().reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PatchScoring(nn.Module):
    """image -> (score [N], embedding [N, dim], anomaly_map [N, h, w]).

    The features and the coreset are centred on `c`, the mean normal patch feature, before the
    distances ||a||^2 - 2ab + ||b||^2: small norms keep that float32 sum exact enough."""

    c: torch.Tensor
    bank: torch.Tensor
    bank_sq: torch.Tensor

    def __init__(
        self, pre: Standardise, encoder: PatchEncoder, coreset: torch.Tensor, c: torch.Tensor
    ) -> None:
        super().__init__()
        self.pre = pre
        self.encoder = encoder
        bank = (coreset - c).detach().float()
        self.register_buffer("c", c.detach().float().clone())
        self.register_buffer("bank", bank.t().contiguous())  # (dim, K)
        self.register_buffer("bank_sq", (bank**2).sum(dim=1))  # (K,)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.encoder(self.pre(image))  # (N, dim, h, w)
        n, _, h, w = f.shape
        a = f.flatten(2).transpose(1, 2)  # (N, h*w, dim)
        embedding = a.mean(dim=1)  # (N, dim)
        a = a - self.c
        d = (a**2).sum(dim=2, keepdim=True) - 2 * (a @ self.bank) + self.bank_sq  # (N, h*w, K)
        patch_scores = d.amin(dim=2).clamp_min(0).reshape(n, h, w)
        return patch_scores.flatten(1).amax(dim=1), embedding, patch_scores
