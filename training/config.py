"""The training choices, defined once: what a run trains on, its hyper-parameters, the choices.

Torch-free, so that the CLI builds its arguments, choices and defaults from them without
importing torch, and every other module (training, bench, metadata) names a choice through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

# The objectives are part of the model file's contract, so they are defined there.
from modelfile.metadata import OBJECTIVES as OBJECTIVES
from modelfile.metadata import ONE_CLASS as ONE_CLASS
from modelfile.metadata import SOFT_BOUNDARY as SOFT_BOUNDARY
from modelfile.metadata import DecodePolicy
from modelfile.metadata import Objective as Objective

PretrainTask = Literal["dcae", "rotation"]
PRETRAIN_TASKS: tuple[PretrainTask, ...] = ("dcae", "rotation")
# Rotation prediction is a classification: it learns at a larger step than the distances.
ROTATION_LR = 1e-3

# Name -> (quarter turns, mirrored) per transformation, the identity first.
TRANSFORM_SETS: dict[str, tuple[tuple[int, bool], ...]] = {
    "identity": ((0, False),),
    "rotations": ((0, False), (1, False), (2, False), (3, False)),
    "rotations-flips": tuple((turns, flip) for flip in (False, True) for turns in range(4)),
}
TRANSFORMS = tuple(TRANSFORM_SETS)

# The paper's three networks: (filters per conv module, dense units).
ARCHITECTURES: dict[str, tuple[tuple[int, ...], int]] = {
    "mnist": ((8, 4), 32),
    "cifar10": ((32, 64, 128), 128),
    "gtsrb": ((16, 32, 64), 32),
}
NETS = tuple(ARCHITECTURES)

# image: the paper's whole-image Deep SVDD; patch: a patch-level model with an anomaly map.
MODELS = ("image", "patch")
PATCH_OBJECTIVES = ("synthetic", "position")  # how a patch encoder trains (training/patch/fit.py)

DATASETS = ("mnist", "fashion-mnist", "cifar10", "gtsrb", "folder", "npz")
DEVICES = ("auto", "cpu", "cuda")
# The arithmetic of a training step: fp32, bf16 autocast, or "auto" (bf16 only where the
# device computes bf16 natively: a CUDA GPU of compute capability 8.0 or above, a CPU with AMX
# or AVX-512-BF16). fp32 is the default: see docs/training.md, "Precision and memory layout".
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16")
# An ensemble member without pretraining: "none:TRANSFORMS".
NO_PRETRAINING = "none"


def parse_member(spec: str) -> tuple[str, str]:
    """'PRETRAINING:TRANSFORMS' (pretraining dcae, rotation or none) -> the pair, checked."""
    task, sep, transforms = spec.strip().partition(":")
    tasks = (*PRETRAIN_TASKS, NO_PRETRAINING)
    if not sep or task not in tasks or transforms not in TRANSFORM_SETS:
        raise ValueError(
            f"ensemble member {spec!r} is not PRETRAINING:TRANSFORMS with PRETRAINING one of "
            f"{', '.join(tasks)} and TRANSFORMS one of {', '.join(sorted(TRANSFORM_SETS))} "
            "(e.g. dcae:identity,rotation:rotations)"
        )
    return task, transforms


@dataclass(frozen=True)
class TrainConfig:
    """Resolved hyper-parameters; stored with every checkpoint and exported model."""

    objective: Objective = ONE_CLASS
    nu: float = 0.1
    epochs: int = 250
    lr: float = 1e-4
    lr_milestone: int | None = None  # lr x0.1 from this epoch; None: 60% in (paper: 150 of 250)
    batch_size: int = 200
    weight_decay: float = 1e-6
    pretrain: bool = True
    pretrain_epochs: int = 350
    pretrain_lr_milestone: int | None = None  # None: 250/350 in, as the paper's 250 + 100
    pretrain_task: PretrainTask = "dcae"  # or "rotation": predict the transformation applied
    pretrain_lr: float | None = None  # None: lr for the DCAE, ROTATION_LR for rotation
    transforms: str = "identity"  # a centre per transformation (training/transforms.py)
    ensemble: int = 1  # members with seeds seed, seed + 1, ... in one graph (training/ensemble.py)
    members: tuple[str, ...] = ()  # "PRETRAINING:TRANSFORMS" per ensemble member; () = these flags
    warm_up_epochs: int = 10  # soft-boundary: R is first solved for after these epochs
    seed: int = 0
    device: str = "cpu"
    precision: Precision = "fp32"  # the forward passes' arithmetic; c and distances stay fp32
    channels_last: bool | None = None  # None: channels-last on the CPU, not on CUDA
    model: str = "image"  # or "patch" (training/patch): the fields below are its own
    patch_size: int = 32  # px; a multiple of 4, at least 16
    # Passes over the training images, several patch pairs per image; 0: the randomly
    # initialised encoder (BatchNorm fitted), which measured better on surfaces (docs/training.md)
    patch_epochs: int = 0
    # What the patch encoder's epochs train it for (training/patch/fit.py): "synthetic", finding
    # synthetic local anomalies made from the normal images; or "position", Patch SVDD's
    # relative-position pretext plus SVDD'
    patch_objective: str = "synthetic"
    coreset: int = 2048  # normal patch features kept in the graph for the nearest-neighbour score

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {MODELS}")
        if self.patch_size < 16 or self.patch_size % 4:
            raise ValueError(
                f"patch size must be a multiple of 4 of at least 16, got {self.patch_size}"
            )
        if self.patch_epochs < 0:
            raise ValueError(f"patch epochs must be >= 0, got {self.patch_epochs}")
        if self.patch_objective not in PATCH_OBJECTIVES:
            raise ValueError(
                f"unknown patch objective {self.patch_objective!r}; "
                f"choose one of {PATCH_OBJECTIVES}"
            )
        if self.coreset < 1:
            raise ValueError(f"coreset must be >= 1, got {self.coreset}")
        if not 0.0 < self.nu <= 1.0:
            raise ValueError(f"nu must be in (0, 1], got {self.nu}")
        for name in ("epochs", "pretrain_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.pretrain_task not in PRETRAIN_TASKS:
            raise ValueError(
                f"unknown pretraining {self.pretrain_task!r}; choose one of {PRETRAIN_TASKS}"
            )
        if self.pretrain_lr is not None and not self.pretrain_lr > 0:
            raise ValueError(f"pretraining learning rate must be > 0, got {self.pretrain_lr}")
        if self.ensemble < 1:
            raise ValueError(f"an ensemble needs at least 1 member, got {self.ensemble}")
        if self.n_members > 1 and self.objective != ONE_CLASS:
            raise ValueError("--ensemble needs the one-class objective (a radius per member)")
        if self.transforms not in TRANSFORM_SETS:
            raise ValueError(
                f"unknown transforms {self.transforms!r}; choose one of {sorted(TRANSFORM_SETS)}"
            )
        for member in self.members:
            parse_member(member)
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, object]) -> TrainConfig:
        """The defaults with `overrides` ({field name: value}) applied, then validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"unknown training setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**overrides)  # type: ignore[arg-type]

    @property
    def milestone(self) -> int:
        return self.lr_milestone if self.lr_milestone is not None else round(0.6 * self.epochs)

    @property
    def pretrain_milestone(self) -> int:
        if self.pretrain_lr_milestone is not None:
            return self.pretrain_lr_milestone
        return round(self.pretrain_epochs * 250 / 350)

    @property
    def n_members(self) -> int:
        """Networks in the exported graph: 1, or those of an ensemble."""
        return self.ensemble * max(1, len(self.members))

    @property
    def pretrain_step(self) -> float:
        """The pretraining phase's learning rate."""
        if self.pretrain_lr is not None:
            return self.pretrain_lr
        return ROTATION_LR if self.pretrain_task == "rotation" else self.lr

    @property
    def kind(self) -> str:
        """'PRETRAINING:TRANSFORMS', as `members` names an ensemble member."""
        return f"{self.pretrain_task if self.pretrain else NO_PRETRAINING}:{self.transforms}"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "lr_milestone": self.milestone, "pretrain_lr": self.pretrain_step}


@dataclass(frozen=True)
class RunSpec:
    """What to train on and where the model goes (the non-hyper-parameter arguments)."""

    dataset: str
    normal_class: str
    data_dir: Path | None = None
    download: bool = False
    image_size: int | None = None
    channels: int | None = None
    arch: str | None = None
    leaky_slope: float = 0.1
    name: str | None = None
    models_dir: Path = Path("models")
    holdout: float = 0.1
    resume: bool = False
    checkpoint_every: int = 10
    progress: bool = True
    cache_dir: Path | None = None  # folder: decoded images memory-mapped here
    anomaly_classes: tuple[str, ...] = ()  # Deep SAD: classes whose training images are labelled
    labelled_fraction: float = 1.0  # share of each such class's training images used
    strict: bool = False  # stop at the first unreadable image file instead of skipping it
    # How image files are decoded (modelfile.imaging); the model's metadata records it, and
    # serving decodes the model's images the same way.
    decode: DecodePolicy = "reduced"
