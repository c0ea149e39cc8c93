"""The texture term: what the patch map cannot see, an image that is wrong as a whole.

The map scores each patch by its nearest normal patch. An image of another, smoother surface
(brick under a gravel model, a blank frame from a dead camera or a capped lens) is made of
patches that each resemble *some* normal patch, a flat stone or a shadow, and scores as normal
or more normal than the normal images: a uniform grey 128-px frame scored 0.01 on a gravel
model whose 95% threshold was 9.9.

The texture term looks at the image's whole spectrum instead: the log standard deviation of
each intensity band over the image (`texture` in training/patch/bands.py), 3 numbers per
channel. Normal images' descriptors are whitened; an image's distance is its Euclidean
distance to the nearest training image's descriptor, in units of the held-out normal images'
95th percentile distance. Beyond a margin of TEXTURE_MARGIN such units the excess is added
to every cell of the map (and so to the image score): a surface, a focus or a contrast far
from anything seen in training. Within the margin the term is 0 and the map is the patches' alone.

The margin is wide because photographs drift: on bench/defects' tuning surfaces (moon, ihc,
pattern; seed 0 and 1) the farthest good test crop, from another part of the photograph,
sat 3 to 18 units away, the median crop of another surface 15 to 51. Chosen there: a margin
of 20 took the other surfaces' image AUROC from 0.74 to 0.97 (ihc's from 0.31 to 1.00) and
left every planted defect's AUROC as it was; a margin of 10 cost pattern's scratches up to
0.07. The bands' quantiles, a histogram of patch
clusters and the mean whitened patch feature separated other surfaces as well but drifted
more between parts of one photograph.
"""

from __future__ import annotations

import torch
from torch import nn

from training.patch.bank import greedy_coreset
from training.patch.scoring import whitening

TEXTURE_MARGIN = 20.0  # held-out 95th-percentile distances within which the term is 0
TEXTURE_EPS = 1e-3  # whitening ridge, as a share of the descriptors' mean variance
TEXTURE_BANK = 4096  # training descriptors kept (a greedy k-center coreset beyond)
MIN_SCALE = 1e-3  # whitened units: held-out images that copy training ones still leave a scale


class TextureScorer(nn.Module):
    """(N, B) descriptors -> (N,) excess distance beyond the margin, 0 for most normal images."""

    mu: torch.Tensor
    whiten: torch.Tensor
    bank: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        mu: torch.Tensor,
        whiten: torch.Tensor,
        bank: torch.Tensor,
        scale: float,
        margin: float = TEXTURE_MARGIN,
    ) -> None:
        super().__init__()
        self.register_buffer("mu", mu.detach().float().clone())
        self.register_buffer("whiten", whiten.detach().float().clone())
        self.register_buffer("bank", bank.detach().float().clone())  # (M, B), whitened
        self.register_buffer("scale", torch.tensor(max(float(scale), MIN_SCALE)))
        self.margin = float(margin)

    def distances(self, d: torch.Tensor) -> torch.Tensor:
        """(N, B) descriptors -> (N,) whitened distances to the nearest training descriptor."""
        a = (d - self.mu) @ self.whiten
        return ((a[:, None, :] - self.bank[None]) ** 2).sum(dim=2).min(dim=1).values.sqrt()

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return (self.distances(d) / self.scale - self.margin).clamp_min(0.0)

    def record(self) -> dict[str, float | int]:
        return {"margin": self.margin, "scale": float(self.scale), "images": len(self.bank)}


def fit_texture(train: torch.Tensor, holdout: torch.Tensor, gen: torch.Generator) -> TextureScorer:
    """The term from the training images' descriptors (N, B) and the held-out ones' (the scale)."""
    mu, w = whitening(train, eps=TEXTURE_EPS)
    white = (train.float() - mu) @ w
    bank = white[greedy_coreset(white, TEXTURE_BANK, gen)]
    scorer = TextureScorer(mu, w, bank, scale=1.0)
    held = scorer.distances(holdout.float())
    scale = float(torch.quantile(held.double(), 0.95)) if len(held) else 0.0
    scorer.scale.fill_(max(scale, MIN_SCALE))
    return scorer
