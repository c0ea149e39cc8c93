"""Pydantic response models of the HTTP API (they are the OpenAPI schema at /docs)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict

from modelfile.metadata import Calibration, InputSpec, ModelKind, ModelMetadata
from service.repository import LoadedModel, LoadFailure
from service.traffic import Traffic


class ThresholdUsed(BaseModel):
    name: str
    value: float


class ImageScore(BaseModel):
    index: int
    filename: str | None
    score: float
    is_anomaly: bool


class AnomalyMap(BaseModel):
    """Where the score comes from, row-major: a patch model's own per-patch scores on its
    grid, else occlusion drops at the model's input size."""

    width: int
    height: int
    values: list[float]
    png: str  # base64 PNG of the map over the image


class ExplainedScore(ImageScore):
    anomaly_map: AnomalyMap


class ErrorDetail(BaseModel):
    code: str
    message: str


class ImageFailure(BaseModel):
    """An image of the request that got no score, and why (the others are scored)."""

    index: int
    filename: str | None
    error: ErrorDetail


class ScoreResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    version: int
    threshold: ThresholdUsed
    results: list[ExplainedScore | ImageScore | ImageFailure]


class ThresholdInfo(BaseModel):
    """One threshold with the evidence behind its false-alarm rate (None where a model made
    before calibration was recorded does not say)."""

    value: float
    expected_anomaly_rate: float | None
    # Normal images the rate was measured on, and its confidence interval [low, high].
    held_out: int | None
    rate_interval: list[float] | None
    confidence: float | None

    @classmethod
    def all_of(cls, meta: ModelMetadata) -> dict[str, ThresholdInfo]:
        calibration = meta.calibration
        return {
            name: cls(
                value=value,
                expected_anomaly_rate=meta.expected_anomaly_rate.get(name),
                held_out=calibration.n if calibration is not None else None,
                rate_interval=(
                    calibration.rate_interval.get(name) if calibration is not None else None
                ),
                confidence=calibration.confidence if calibration is not None else None,
            )
            for name, value in meta.thresholds.items()
        }


class VersionInfo(BaseModel):
    version: int
    # image: whole-image Deep SVDD, maps by occlusion; patch: the graph returns its map.
    kind: ModelKind
    # `[h, w]` of the graph's `anomaly_map` output; None: the graph has none.
    anomaly_map: list[int] | None
    created: str
    objective: str
    nu: float
    input: InputSpec
    center_dim: int
    radius: float | None
    thresholds: dict[str, float]
    default_threshold: str
    expected_anomaly_rate: dict[str, float]
    threshold_details: dict[str, ThresholdInfo]
    calibration: Calibration | None
    # Held-out normal scores the drift gauges compare with; None: the file has none, no drift.
    drift_reference: int | None
    metrics: dict[str, float | None]
    dataset: dict[str, Any]
    providers: list[str]

    @classmethod
    def of(cls, model: LoadedModel) -> VersionInfo:
        meta = model.metadata
        return cls(
            version=model.version,
            kind=meta.kind,
            anomaly_map=None if model.map_shape is None else list(model.map_shape),
            created=meta.created,
            objective=meta.objective,
            nu=meta.nu,
            input=meta.input,
            center_dim=meta.rep_dim,
            radius=meta.radius,
            thresholds=meta.thresholds,
            default_threshold=meta.default_threshold,
            expected_anomaly_rate=meta.expected_anomaly_rate,
            threshold_details=ThresholdInfo.all_of(meta),
            calibration=meta.calibration,
            drift_reference=None if meta.score_reference is None else len(meta.score_reference),
            metrics={
                k: v if v is not None and math.isfinite(v) else None
                for k, v in meta.metrics.items()
            },
            # Where the training data lay is the trainer's path, not for clients.
            dataset=meta.dataset.model_dump(exclude={"data_dir"}),
            providers=list(model.providers),
        )


class TrafficPolicyBody(BaseModel):
    """A traffic policy: percent of the requests naming no version per version (adding up to
    100), the version scoring them in the shadow, and the primary a promotion replaced."""

    weights: dict[str, float]
    shadow: int | None = None
    previous: int | None = None


class TrafficStatus(BaseModel):
    """The policy a model serves by (None: its default version answers), and why its
    traffic.json was refused, if it was."""

    policy: TrafficPolicyBody | None
    error: str | None

    @classmethod
    def of(cls, traffic: Traffic, name: str) -> TrafficStatus:
        policy = traffic.policy(name)
        body = TrafficPolicyBody(**policy.to_json()) if policy is not None else None
        return cls(policy=body, error=traffic.errors.get(name))


class ModelInfo(BaseModel):
    name: str
    latest_version: int
    # What answers without `?version=` and without a traffic policy: the latest, or the
    # version `default_version` pins.
    default_version: int
    default_version_pinned: bool
    is_default: bool
    traffic: TrafficStatus
    versions: list[VersionInfo]


class TrafficAnswer(TrafficStatus):
    model: str
    default_version: int


class PromoteBody(BaseModel):
    version: int


class ModelList(BaseModel):
    default_model: str | None
    models: list[ModelInfo]
    # What the last load or reload refused and why; a refused version that was serving
    # keeps serving (it is in `models`).
    refused: list[Refusal]


class HealthStatus(BaseModel):
    status: str
    models: list[str]


class LoadedVersion(BaseModel):
    name: str
    version: int
    providers: list[str]


class Refusal(BaseModel):
    model: str
    version: str
    reason: str

    @classmethod
    def of(cls, failure: LoadFailure) -> Refusal:
        return cls(model=failure.model, version=failure.version, reason=failure.reason)


class ReloadResponse(BaseModel):
    loaded: list[LoadedVersion]
    failures: list[Refusal]
