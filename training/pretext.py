"""Self-supervised pretraining of the encoder: predict which geometric transformation (a
quarter turn, a mirror image) was applied to a normal image (Gidaris et al. 2018; Golan and
El-Yaniv 2018). An alternative to the DCAE that learns what normal images look like upright.

A linear head on phi's output classifies the transformation; the head is dropped afterwards
and the encoder goes on to Deep SVDD, where its collapse guards (no bias, no affine
BatchNorm) still hold: the head is never part of the exported model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.batches import Images, as_images
from training.checkpoint import Checkpointer
from training.deepsvdd import TrainConfig, shard_batches, standard_layout, training_layout
from training.distributed import Dist
from training.networks import Encoder, NetConfig
from training.phases import EpochTimer, Phase, epoch_bar, mean_over
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
    data, dist = as_images(data), dist or Dist()
    # Built from the global RNG that pipeline.fit seeded, as the DCAE is.
    model = TransformClassifier(net_cfg, pretext_transforms(cfg)).to(data.device)
    training_layout(model, data.device)
    phase = Phase("pretrain", model, cfg, cfg.pretrain_milestone, cfg.seed, dist, cfg.pretrain_step)
    wrapped, opt = phase.model, phase.opt
    start, history, _ = phase.resume(ckpt)
    timer = EpochTimer()
    bar = epoch_bar("pretrain rotation", start, cfg.pretrain_epochs, progress)
    k = len(model.transforms)
    for epoch in bar:
        wrapped.train()
        total = 0.0
        with timer:
            for rows, n_batch in shard_batches(len(data), cfg.batch_size, phase.gen, dist):
                xb, _ = data[rows]
                labels = model.transforms.labels(len(xb), xb.device)
                # Summed over the K copies, divided by this rank's share of the global batch.
                loss = F.cross_entropy(wrapped(xb), labels, reduction="sum") / (
                    k * n_batch / dist.world
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * n_batch / dist.world
            phase.sched.step()
        history.append(mean_over(total, len(data), dist))
        bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
        phase.checkpoint(ckpt, epoch + 1, cfg.pretrain_epochs, history)
    phase.finish(model)
    standard_layout(model)
    return model.encoder, history, timer.mean


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
