"""The `deepsvdd` metadata a model file carries: one schema for the exporter and the service."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FORMAT_VERSION = 1
METADATA_KEY = "deepsvdd"
# The Deep SVDD objectives a model can be trained with (training/config.py offers these).
Objective = Literal["one-class", "soft-boundary"]
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)
ONE_CLASS, SOFT_BOUNDARY = OBJECTIVES
# image: the paper's whole-image Deep SVDD; patch: per-patch scores and an `anomaly_map` output.
ModelKind = Literal["image", "patch"]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)
# How the model's images were decoded in training, and so must be in serving (modelfile.imaging):
# full: every pixel decoded, then resized; reduced: JPEG DCT scaling towards the input size first.
DecodePolicy = Literal["full", "reduced"]
DECODE_POLICIES: tuple[DecodePolicy, ...] = get_args(DecodePolicy)
# Model names become URL segments, directory names and Prometheus label values:
# keep them short, lower-case and free of path separators.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


class MetadataError(ValueError):
    """A model's metadata is missing, not JSON, or does not fit the schema."""


def is_valid_name(name: str) -> bool:
    return bool(_NAME_RE.fullmatch(name)) and ".." not in name


class InputSpec(BaseModel):
    """What the graph's `image` input expects: pixel values / 255, `[N, C, H, W]`."""

    model_config = ConfigDict(extra="forbid")

    channels: Literal[1, 3]
    height: int = Field(gt=0, le=4096)
    width: int = Field(gt=0, le=4096)
    color: Literal["L", "RGB"]

    @model_validator(mode="after")
    def _color_matches_channels(self) -> InputSpec:
        expected = "L" if self.channels == 1 else "RGB"
        if self.color != expected:
            raise ValueError(f"color {self.color!r} does not fit {self.channels} channel(s)")
        return self


class DatasetInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    normal_class: int | str
    class_name: str | None = None
    n_train: int = Field(ge=1)
    data_dir: str | None = None  # where the training data lay; evaluate and report default to it


# holdout: normal training images never trained on; calibrate: the user's own images.
CalibrationMethod = Literal["holdout", "cross-fit", "calibrate"]
CONFIDENCE = 0.95  # of the rate intervals that training and `deepsvdd calibrate` write
# The most held-out normal scores a model file carries as its drift reference.
MAX_REFERENCE = 10_000


class Calibration(BaseModel):
    """How many held-out normal images the thresholds rest on, and how uncertain their rates are.

    The one calibration record: training and `deepsvdd calibrate` both build it with
    `modelfile.thresholds.calibration_of`."""

    model_config = ConfigDict(extra="allow")

    n: int = Field(ge=1)  # normal images the thresholds were calibrated on
    method: CalibrationMethod
    folds: int | None = None  # cross-fit only
    confidence: float = Field(default=CONFIDENCE, gt=0.0, lt=1.0)
    # Threshold name -> [low, high]: Clopper-Pearson interval, at `confidence`, of the
    # false-alarm rate on normal images at that threshold.
    rate_interval: dict[str, list[float]] = Field(default_factory=dict)

    @field_validator("rate_interval")
    @classmethod
    def _intervals(cls, intervals: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, bounds in intervals.items():
            if len(bounds) != 2 or not 0.0 <= bounds[0] <= bounds[1] <= 1.0:
                raise ValueError(f"rate_interval[{name!r}] must be [low, high] in [0, 1]")
        return intervals


def images_per_distance_run(cells: int, coreset: int, budget: int, most: int) -> int:
    """Images per run of a patch model's graph, which builds a float32 (images x `cells` x
    `coreset`) distance matrix per view: `most`, or as few (at least one) as keep that matrix
    within `budget` bytes."""
    return max(1, min(most, budget // (cells * coreset * 4)))


class PatchInfo(BaseModel):
    """How a patch model reads an image: `size`-px patches every `stride` px, scored on a
    `grid` [h, w] by the squared distance of their feature to the nearest of `coreset` normal
    patch features (chosen from `bank` training patches); the image score is `score`'s rule."""

    model_config = ConfigDict(extra="allow")

    size: int = Field(gt=0)
    stride: int = Field(gt=0)
    grid: list[int] = Field(min_length=2, max_length=2)  # [h, w] of the anomaly map
    coreset: int = Field(ge=1)
    bank: int = Field(ge=1)
    dims: int = Field(ge=1)
    score: str
    # The views whose standardised maps the model averages (e.g. "16 px", "bands", "32 px":
    # patch features of a size, or intensity bands); absent in models that score one view.
    views: list[str] | None = None

    @field_validator("grid")
    @classmethod
    def _grid_positive(cls, grid: list[int]) -> list[int]:
        if min(grid) < 1:
            raise ValueError(f"grid {grid} must be two positive sizes [h, w]")
        return grid


class ModelMetadata(BaseModel):
    """Everything needed to interpret a model's `score` output, stored in the ONNX file."""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    name: str
    kind: ModelKind = "image"  # absent in models made before patch models
    decode: DecodePolicy = "full"  # absent in models made before reduced decoding
    patch: PatchInfo | None = None  # kind "patch" only: its patches, grid and memory bank
    version: int = Field(ge=1)
    created: str
    objective: Objective
    nu: float = Field(gt=0.0, le=1.0)
    center: list[float] = Field(min_length=1)
    radius: float | None
    thresholds: dict[str, float] = Field(min_length=1)
    # Fraction of held-out normal images scoring above each threshold: the anomaly
    # rate a healthy stream of normal images should show, which the alerts compare to.
    expected_anomaly_rate: dict[str, float] = Field(default_factory=dict)
    default_threshold: str
    input: InputSpec
    dataset: DatasetInfo
    metrics: dict[str, float | None] = Field(default_factory=dict)
    calibration: Calibration | None = None  # absent in models made before it was recorded
    # Held-out normal scores, sorted (a quantile-spaced sample of them, `modelfile.reference`):
    # what the service's drift gauges compare recent scores to. None: an older model, no drift.
    score_reference: list[float] | None = Field(
        default=None, min_length=2, max_length=MAX_REFERENCE
    )
    training: dict[str, Any] = Field(default_factory=dict)
    software: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, name: str) -> str:
        if not is_valid_name(name):
            raise ValueError(f"model name {name!r} must match {NAME_PATTERN}")
        return name

    @field_validator("format_version")
    @classmethod
    def _known_format(cls, version: int) -> int:
        if version != FORMAT_VERSION:
            raise ValueError(
                f"format_version {version} is not supported (expected {FORMAT_VERSION})"
            )
        return version

    @field_validator("center")
    @classmethod
    def _center_finite(cls, center: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in center):
            raise ValueError("center has a non-finite coordinate")
        return center

    @field_validator("thresholds")
    @classmethod
    def _thresholds_finite(cls, thresholds: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in thresholds.items() if not math.isfinite(v) or v < 0]
        if bad:
            raise ValueError(f"thresholds {bad} are not finite non-negative numbers")
        return thresholds

    @field_validator("score_reference")
    @classmethod
    def _reference_sorted(cls, reference: list[float] | None) -> list[float] | None:
        if reference is None:
            return None
        if not all(math.isfinite(v) for v in reference):
            raise ValueError("score_reference has a non-finite score")
        if reference != sorted(reference):
            raise ValueError("score_reference must be sorted")
        return reference

    @model_validator(mode="after")
    def _consistent(self) -> ModelMetadata:
        if self.default_threshold not in self.thresholds:
            raise ValueError(
                f"default_threshold {self.default_threshold!r} is not one of "
                f"{sorted(self.thresholds)}"
            )
        if self.objective == "soft-boundary":
            if self.radius is None or not math.isfinite(self.radius) or self.radius < 0:
                raise ValueError("a soft-boundary model needs a finite radius >= 0")
            if "radius" not in self.thresholds:
                raise ValueError("a soft-boundary model needs the threshold 'radius' (R^2)")
        elif self.radius is not None:
            raise ValueError("a one-class model has no radius (null)")
        if (self.kind == "patch") != (self.patch is not None):
            raise ValueError("a patch model, and only a patch model, has the field 'patch'")
        return self

    @property
    def rep_dim(self) -> int:
        return len(self.center)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | None) -> ModelMetadata:
        if text is None:
            raise MetadataError(f"no '{METADATA_KEY}' entry in the model's metadata_props")
        try:
            return cls.model_validate(json.loads(text))
        except json.JSONDecodeError as exc:
            raise MetadataError(f"'{METADATA_KEY}' metadata is not JSON: {exc.msg}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "metadata"
            raise MetadataError(
                f"'{METADATA_KEY}' metadata is invalid at {where}: {first['msg']}"
            ) from exc


CUSTOM_THRESHOLD = "custom"


def resolve_threshold(meta: ModelMetadata, requested: str | None) -> tuple[str, float]:
    """A threshold name of the model, or a non-negative number (named "custom"); None: the
    model's default. The one rule for `/score`, the Open Inference Protocol, `deepsvdd score`
    and `deepsvdd evaluate`. Raises ValueError naming the choices."""
    requested = requested if requested is not None else meta.default_threshold
    if requested in meta.thresholds:
        return requested, meta.thresholds[requested]
    try:
        value = float(requested)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"threshold {requested!r} is neither a non-negative number nor one of "
            f"{sorted(meta.thresholds)}"
        )
    return CUSTOM_THRESHOLD, value
