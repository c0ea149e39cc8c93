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

from training.patch.bank import greedy_coreset
from training.patch.scoring import TextureScorer, whitening

TEXTURE_MARGIN = 20.0  # held-out 95th-percentile distances within which the term is 0
TEXTURE_EPS = 1e-3  # whitening ridge, as a share of the descriptors' mean variance
TEXTURE_BANK = 4096  # training descriptors kept (a greedy k-center coreset beyond)
# Whitened units: held-out images that copy training ones still leave a scale.
MIN_SCALE = 1e-3


def fit_texture(train: torch.Tensor, holdout: torch.Tensor, gen: torch.Generator) -> TextureScorer:
    """The term from the training images' descriptors (N, B) and the held-out ones' (the scale)."""
    mu, w = whitening(train, eps=TEXTURE_EPS)
    white = (train.float() - mu) @ w
    bank = white[greedy_coreset(white, TEXTURE_BANK, gen)]
    scorer = TextureScorer(mu, w, bank, scale=1.0, margin=TEXTURE_MARGIN)
    held = scorer.distances(holdout.float())
    scale = float(torch.quantile(held.double(), 0.95)) if len(held) else 0.0
    scorer.scale.fill_(max(scale, MIN_SCALE))
    return scorer
