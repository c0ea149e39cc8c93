"""Geometric transformations for self-supervision (rotations by quarter turns, mirror images),
as modules that run inside the training loop and inside the exported graph.

`MultiView` wraps an encoder: phi'(x) = [phi(T_1 x), ..., phi(T_K x)], one batched forward
pass over all K transformed copies. Deep SVDD on phi' has a centre per transformation (the
K blocks of c) and its score ||phi'(x) - c||^2 is the sum over the transformations of
||phi(T_k x) - c_k||^2: the objectives, the radius, Deep SAD and the export work unchanged,
and the model file keeps its contract (`score` is the squared distance of `embedding` to the
metadata centre, now K * p coordinates long).
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import TRANSFORM_SETS

# Rotation pretraining with --transforms identity still needs something to predict.
DEFAULT_PRETEXT = "rotations"


def check_transforms(name: str, height: int, width: int) -> None:
    """A clear error for an unknown set, or quarter turns of a non-square image."""
    if name not in TRANSFORM_SETS:
        raise ValueError(f"unknown transforms {name!r}; choose one of {sorted(TRANSFORM_SETS)}")
    odd_turns = any(turns % 2 for turns, _ in TRANSFORM_SETS[name])
    if odd_turns and height != width:
        raise ValueError(
            f"--transforms {name} turns images by 90 degrees, which needs square images; "
            f"these are {height}x{width} (pass --image-size to make them square)"
        )


def transform(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """(N, C, H, W) turned `turns` quarter turns counter-clockwise, then mirrored left-right."""
    if turns % 4:
        x = torch.rot90(x, turns, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if flip else x


class Transforms(nn.Module):
    """(N, C, H, W) -> (K * N, C, H, W): the K transformed copies, transformation-major."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in TRANSFORM_SETS:
            raise ValueError(f"unknown transforms {name!r}; choose one of {sorted(TRANSFORM_SETS)}")
        self.name = name
        self.views = TRANSFORM_SETS[name]

    def __len__(self) -> int:
        return len(self.views)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([transform(x, turns, flip) for turns, flip in self.views])

    def labels(self, n: int, device: torch.device) -> torch.Tensor:
        """The transformation index of each row of `forward`'s output, (K * n,)."""
        return torch.arange(len(self.views), device=device).repeat_interleave(n)


class MultiView(nn.Module):
    """phi'(x) = the encoder's outputs for each transformation of x, side by side: (N, K * p)."""

    def __init__(self, encoder: nn.Module, transforms: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.transforms = Transforms(transforms)
        self.out_dim = len(self.transforms) * out_dim(encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(self.transforms(x))  # (K * N, p)
        k = len(self.transforms)
        return z.view(k, x.shape[0], -1).transpose(0, 1).reshape(x.shape[0], self.out_dim)


def out_dim(net: nn.Module) -> int:
    """The length of the representation an encoder (or a MultiView) produces."""
    dim = getattr(net, "out_dim", None)
    if isinstance(dim, int):
        return dim
    fc = getattr(net, "fc", None)
    if isinstance(fc, nn.Linear):
        return fc.out_features
    raise TypeError(f"cannot tell the output size of {type(net).__name__}")


def with_transforms(encoder: nn.Module, transforms: str) -> nn.Module:
    """The network Deep SVDD trains: the encoder itself for the identity, else a MultiView."""
    return encoder if transforms == "identity" else MultiView(encoder, transforms)
