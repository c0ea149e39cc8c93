"""The variants of bench/beyond: each a `deepsvdd train` configuration, a replacement of a few
TrainConfig fields, or an ensemble of such members."""

from __future__ import annotations

from dataclasses import dataclass, replace

from training.config import TrainConfig


@dataclass(frozen=True)
class Variant:
    """A `deepsvdd train` configuration: its flags and what they set in TrainConfig."""

    name: str
    flags: str
    pretrain: bool
    pretrain_task: str
    transforms: str
    # An ensemble: the variants its members are, in `deepsvdd train`'s order; the i-th
    # member of a kind has seed + i (training/ensemble.py's rule).
    ensemble: tuple[str, ...] = ()

    @property
    def members(self) -> int:
        return max(1, len(self.ensemble))

    def config(self, base: TrainConfig) -> TrainConfig:
        return replace(
            base,
            pretrain=self.pretrain,
            pretrain_task=self.pretrain_task,  # type: ignore[arg-type]
            transforms=self.transforms,
        )


VARIANTS = {
    v.name: v
    for v in (
        Variant("deep-svdd", "(the paper: DCAE, one centre)", True, "dcae", "identity"),
        Variant("rotation-pretrain", "--pretrain-task rotation", True, "rotation", "identity"),
        Variant(
            "transform-centres", "--no-pretrain --transforms rotations", False, "dcae", "rotations"
        ),
        Variant(
            "rotation+centres",
            "--pretrain-task rotation --transforms rotations",
            True,
            "rotation",
            "rotations",
        ),
        Variant(
            "rotation-flips+centres",
            "--pretrain-task rotation --transforms rotations-flips",
            True,
            "rotation",
            "rotations-flips",
        ),
        Variant(
            "rotation+centres x3",
            "--pretrain-task rotation --transforms rotations --ensemble 3",
            True,
            "rotation",
            "rotations",
            ensemble=("rotation+centres",) * 3,
        ),
        Variant(
            "deep-svdd & rotation+centres",
            "--members dcae:identity,rotation:rotations",
            True,
            "rotation",
            "rotations",
            ensemble=("deep-svdd", "rotation+centres"),
        ),
    )
}
