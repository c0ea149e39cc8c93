"""Self-supervised pretraining of the encoder: predict which geometric transformation (a
quarter turn, a mirror image) was applied to a normal image (Gidaris et al. 2018; Golan and
El-Yaniv 2018). An alternative to the DCAE that learns what normal images look like upright.

A linear head on phi's output classifies the transformation; the head is dropped afterwards
and the encoder goes on to Deep SVDD, where its collapse guards (no bias, no affine
BatchNorm) still hold: the head is never part of the exported model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from training.batches import Images, as_images
from training.checkpoint import Checkpointer
from training.config import TrainConfig
from training.deepsvdd import pretrain_dcae, pretrain_loop
from training.distributed import Dist
from training.networks import Encoder, NetConfig
from training.transforms import DEFAULT_PRETEXT, Transforms


class TransformClassifier(nn.Module):
    """The encoder with a linear head: logits over the K transformations, (K * N, K)."""

    def __init__(self, cfg: NetConfig, transforms: str) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.transforms = Transforms(transforms)
        self.head = nn.Linear(cfg.rep_dim, len(self.transforms))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.transforms(x)))


def pretext_transforms(cfg: TrainConfig) -> str:
    """What rotation pretraining predicts: the Deep SVDD transformations, or quarter turns."""
    return DEFAULT_PRETEXT if cfg.transforms == "identity" else cfg.transforms


def pretrain_rotation(
    net_cfg: NetConfig,
    data: Images | torch.Tensor,
    cfg: TrainConfig,
    ckpt: Checkpointer | None = None,
    progress: bool = False,
    dist: Dist | None = None,
) -> tuple[Encoder, list[float], float]:
    """Trains the encoder to tell the transformations apart (mean cross-entropy over the
    K copies of each batch); returns the encoder, the loss history and seconds per epoch."""
    data = as_images(data)
    # Built from the global RNG that pipeline.fit seeded, as the DCAE is.
    model = TransformClassifier(net_cfg, pretext_transforms(cfg)).to(data.device)
    k = len(model.transforms)

    def summed_cross_entropy(wrapped: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        labels = model.transforms.labels(len(xb), xb.device)
        # Summed over the rows, averaged over each row's K copies; fp32 under bf16 autocast.
        return F.cross_entropy(wrapped(xb).float(), labels, reduction="sum") / k

    history, seconds = pretrain_loop(
        "pretrain rotation", model, summed_cross_entropy, data, cfg, ckpt, progress, dist
    )
    return model.encoder, history, seconds


@torch.no_grad()
def transform_accuracy(model: TransformClassifier, data: Images | torch.Tensor) -> float:
    """The share of transformed copies whose transformation the head names correctly."""
    data = as_images(data)
    model.eval()
    rows = torch.arange(len(data))
    right, seen = 0, 0
    for part in rows.split(256):
        xb, _ = data[part]
        labels = model.transforms.labels(len(xb), xb.device)
        right += int((model(xb).argmax(dim=1) == labels).sum())
        seen += len(labels)
    return right / max(seen, 1)


def pretrainer(cfg: TrainConfig) -> Callable[..., tuple[Encoder, list[float], float]]:
    """The pretraining loop `cfg.pretrain_task` names: the DCAE's or rotation prediction's."""
    return pretrain_rotation if cfg.pretrain_task == "rotation" else pretrain_dcae
