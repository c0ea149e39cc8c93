"""The table of every `deepsvdd_*` metric: name, type, help, labels, buckets and how a gauge
merges across workers, one row each, and the fixed buckets and label values they use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

SCORE_RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(9))  # 1 .. 256
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REJECTION_REASONS = (
    "queue_full",
    "not_ready",
    "no_models",
    "body_too_large",
    "too_many_images",
    "too_many_pixels",
    "body_timeout",
)

# Why an image of a request got no score (the `code` of its error in the answer).
IMAGE_FAILURE_REASONS = (
    "invalid_image",
    "too_many_pixels",
    "empty_upload",
    "unsupported_media_type",
)


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the table: the `Metrics` attribute that holds it, and its definition.
    `mode`: how a gauge's values from several workers merge (prometheus_client's
    `multiprocess_mode`)."""

    attribute: str
    kind: type[MetricWrapperBase]
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    mode: str | None = None

    def build(self, registry: CollectorRegistry) -> MetricWrapperBase:
        options: dict[str, Any] = {}
        if self.buckets is not None:
            options["buckets"] = self.buckets
        if self.mode is not None:
            options["multiprocess_mode"] = self.mode
        return self.kind(self.name, self.help, self.labels, registry=registry, **options)


_MODEL = ("model",)
_VERSION = ("model", "version")
_SHADOW = ("model", "primary", "shadow")
# Drift gauges: each worker's window is a sample of the traffic, its figures estimate the same
# quantity as the others': never add them up. "livemostrecent" exports those a live worker
# computed last (each refreshes them every few s while scoring, and on a scrape).
_DRIFT = "livemostrecent"
_REF = "Held-out normal scores in the model's drift reference."
_PSI = "PSI of the recent scores against the model's reference, over its decile bins."
_KS = "KS statistic of the recent scores against the model's reference."
_N = "Scores in the drift window."
_ABOVE = "Share of the drift window's scores above a quantile of the model's reference."
_QUANTILE = (*_VERSION, "quantile")
_SPANS = "Trace spans not exported: the export queue was full, or the export failed."
# Every deepsvdd_* metric, in the order of a scrape. The names, labels, help texts and buckets
# are a contract: the Prometheus rules, the dashboards and the tests use them.
METRICS = (
    MetricSpec(
        "images_scored", Counter, "deepsvdd_images_scored_total", "Images scored.", _VERSION
    ),
    MetricSpec(
        "anomalies",
        Counter,
        "deepsvdd_anomalies_total",
        "Images scored above the threshold used for their request.",
        _VERSION,
    ),
    MetricSpec(
        "images_failed",
        Counter,
        "deepsvdd_images_failed_total",
        "Images of scoring requests that got an error instead of a score.",
        (*_VERSION, "reason"),
    ),
    MetricSpec(
        "score_ratio",
        Histogram,
        "deepsvdd_score_ratio",
        "Score divided by the threshold used for the request.",
        _MODEL,
        SCORE_RATIO_BUCKETS,
    ),
    MetricSpec(
        "request_duration",
        Histogram,
        "deepsvdd_request_duration_seconds",
        "HTTP request latency by route template, method and status class.",
        ("route", "method", "status"),
        LATENCY_BUCKETS,
    ),
    MetricSpec(
        "inference_duration",
        Histogram,
        "deepsvdd_inference_duration_seconds",
        "Duration of one ONNX Runtime run.",
        _MODEL,
        LATENCY_BUCKETS,
    ),
    MetricSpec(
        "batch_size",
        Histogram,
        "deepsvdd_batch_size",
        "Images in one ONNX Runtime run.",
        _MODEL,
        BATCH_SIZE_BUCKETS,
    ),
    MetricSpec(
        "queue_wait",
        Histogram,
        "deepsvdd_queue_wait_seconds",
        "Time a request's images waited before their batch ran.",
        buckets=LATENCY_BUCKETS,
    ),
    MetricSpec(
        "queue_depth",
        Gauge,
        "deepsvdd_queue_depth",
        "Images admitted and not yet scored.",
        mode="livesum",
    ),
    MetricSpec(
        "rejected",
        Counter,
        "deepsvdd_rejected_requests_total",
        "Requests refused by a limit or by load shedding.",
        ("reason",),
    ),
    MetricSpec(
        "model_info",
        Gauge,
        "deepsvdd_model_info",
        "1 for every model version served.",
        (*_VERSION, "provider", "objective"),
        mode="livemax",
    ),
    MetricSpec(
        "model_threshold",
        Gauge,
        "deepsvdd_model_threshold",
        "The value of the model's default threshold.",
        _VERSION,
        mode="livemax",
    ),
    MetricSpec(
        "model_expected_anomaly_rate",
        Gauge,
        "deepsvdd_model_expected_anomaly_rate",
        "Fraction of held-out normal images above the default threshold.",
        _VERSION,
        mode="livemax",
    ),
    MetricSpec(
        "model_expected_anomaly_rate_lower",
        Gauge,
        "deepsvdd_model_expected_anomaly_rate_lower",
        "Lower end of the confidence interval of the default threshold's false-alarm rate.",
        _VERSION,
        mode="livemax",
    ),
    MetricSpec(
        "model_expected_anomaly_rate_upper",
        Gauge,
        "deepsvdd_model_expected_anomaly_rate_upper",
        "Upper end of the confidence interval of the default threshold's false-alarm rate.",
        _VERSION,
        mode="livemax",
    ),
    MetricSpec(
        "model_ready",
        Gauge,
        "deepsvdd_model_ready",
        "1 once the model is loaded and answered its warm-up inference.",
        _MODEL,
        mode="livemin",
    ),
    MetricSpec(
        "reference", Gauge, "deepsvdd_model_score_reference", _REF, _VERSION, mode="livemax"
    ),
    MetricSpec("drift_psi", Gauge, "deepsvdd_score_drift_psi", _PSI, _VERSION, mode=_DRIFT),
    MetricSpec("drift_ks", Gauge, "deepsvdd_score_drift_ks", _KS, _VERSION, mode=_DRIFT),
    MetricSpec("window_images", Gauge, "deepsvdd_score_window_images", _N, _VERSION, mode=_DRIFT),
    MetricSpec(
        "window_above", Gauge, "deepsvdd_score_window_above", _ABOVE, _QUANTILE, mode=_DRIFT
    ),
    MetricSpec("spans_dropped", Counter, "deepsvdd_trace_spans_dropped_total", _SPANS, ("reason",)),
    MetricSpec(
        "model_load_failures",
        Counter,
        "deepsvdd_model_load_failures_total",
        "Model versions refused at load or reload.",
        _MODEL,
    ),
    MetricSpec(
        "shadow_images", Counter, "deepsvdd_shadow_images_total", "Images shadows scored.", _VERSION
    ),
    MetricSpec(
        "shadow_dropped",
        Counter,
        "deepsvdd_shadow_dropped_total",
        "Shadow batches left out of the comparison: busy, error, non_finite.",
        (*_MODEL, "reason"),
    ),
    MetricSpec(
        "shadow_agreement",
        Gauge,
        "deepsvdd_shadow_agreement",
        "Share of the window's images on which the shadow decides as the primary.",
        _SHADOW,
        mode="livemostrecent",
    ),
    MetricSpec(
        "shadow_rank_correlation",
        Gauge,
        "deepsvdd_shadow_rank_correlation",
        "Spearman rank correlation of the primary's and the shadow's scores over the window.",
        _SHADOW,
        mode="livemostrecent",
    ),
)
