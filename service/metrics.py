"""Prometheus metrics of one app: every `deepsvdd_*` series, in its own registry.

Labels stay bounded: model names and versions come from the loaded repository, routes are
templates, statuses are classes. With `PROMETHEUS_MULTIPROC_DIR` set (several uvicorn
workers), values live in shared files and each scrape merges them afresh.
"""

from __future__ import annotations

import contextlib
import math
import os
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from service.repository import LoadedModel

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
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


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """`histogram.observe(v)` for every v, with one increment per bucket instead of per value.

    prometheus_client has no bulk observe; this adds to the same per-bucket counters and sum
    its `observe` uses (so multiprocess mode works alike), and falls back to `observe` one
    value at a time if a release ever renames them. A request's scores then cost one pass
    over the buckets instead of one `observe` each (bench/serving/serving.md). The bucket of each
    value comes from `bisect` on the bounds list: `np.searchsorted` turned that list into
    an array on every call, which cost more than the rest of the request's metrics.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        for value in values.tolist():
            histogram.observe(value)
        return
    counts: dict[int, int] = {}
    listed = values.tolist()
    for value in listed:
        # observe() counts a value in the first bucket whose bound is >= it: bisect "left".
        i = bisect_left(bounds, value)
        counts[i] = counts.get(i, 0) + 1
    for i, count in counts.items():
        buckets[i].inc(count)
    total.inc(math.fsum(listed))


class _EveryFamily:
    """Every worker's samples merged, and each family that no worker has a sample of yet
    with its HELP and TYPE lines alone, as one process exports it: the merged files alone
    leave out a labelled family until its first observation (the batch sizes, say)."""

    def __init__(self, own: CollectorRegistry) -> None:
        self._own = own
        self._merged = MultiProcessCollector(None)

    def collect(self) -> Iterator[Metric]:
        merged = list(self._merged.collect())
        seen = {family.name for family in merged}
        yield from merged
        for family in self._own.collect():
            if family.name not in seen:
                yield Metric(family.name, family.documentation, family.type, family.unit)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


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
        "model_load_failures",
        Counter,
        "deepsvdd_model_load_failures_total",
        "Model versions refused at load or reload.",
        _MODEL,
    ),
)


class Metrics:
    """The app's metrics, one attribute per row of `METRICS`; `render` gives the Prometheus
    text format of a scrape."""

    images_scored: Counter
    anomalies: Counter
    images_failed: Counter
    score_ratio: Histogram
    request_duration: Histogram
    inference_duration: Histogram
    batch_size: Histogram
    queue_wait: Histogram
    queue_depth: Gauge
    rejected: Counter
    model_info: Gauge
    model_threshold: Gauge
    model_expected_anomaly_rate: Gauge
    model_expected_anomaly_rate_lower: Gauge
    model_expected_anomaly_rate_upper: Gauge
    model_ready: Gauge
    model_load_failures: Counter

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_mode()
        for spec in METRICS:
            setattr(self, spec.attribute, spec.build(self.registry))
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)

    def count_rejection(self, code: str) -> None:
        """Counts a request refused with the error `code`, if that code is a rejection
        reason: the one place both APIs (the product's and the protocol's) count them."""
        if code in REJECTION_REASONS:
            self.rejected.labels(code).inc()

    def render(self) -> tuple[bytes, str]:
        """The body and content type of a scrape."""
        if self.multiprocess:
            registry = CollectorRegistry()
            registry.register(_EveryFamily(self.registry))
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def model_served(self, model: LoadedModel) -> None:
        name, version = model.name, str(model.version)
        meta = model.metadata
        self.model_info.labels(name, version, model.provider, meta.objective).set(1)
        self.model_threshold.labels(name, version).set(meta.thresholds[meta.default_threshold])
        rate = meta.expected_anomaly_rate.get(meta.default_threshold)
        if rate is not None:
            self.model_expected_anomaly_rate.labels(name, version).set(rate)
        interval = meta.calibration.rate_interval if meta.calibration is not None else {}
        bounds = interval.get(meta.default_threshold)
        if bounds is not None and len(bounds) == 2:
            self.model_expected_anomaly_rate_lower.labels(name, version).set(bounds[0])
            self.model_expected_anomaly_rate_upper.labels(name, version).set(bounds[1])
        self.images_scored.labels(name, version)
        self.anomalies.labels(name, version)
        for reason in IMAGE_FAILURE_REASONS:
            self.images_failed.labels(name, version, reason)

    def scored(self, model: LoadedModel, scores: np.ndarray, threshold: float) -> None:
        """Counts a request's scored images and anomalies, and their score / threshold ratios."""
        version = str(model.version)
        self.images_scored.labels(model.name, version).inc(len(scores))
        self.anomalies.labels(model.name, version).inc(int(np.count_nonzero(scores > threshold)))
        ratios = scores / threshold if threshold > 0 else np.where(scores > 0, math.inf, 0.0)
        observe_many(self.score_ratio.labels(model.name), ratios)

    def images_failed_with(self, model: LoadedModel, codes: list[str]) -> None:
        """Counts a request's images that got an error, by reason."""
        version = str(model.version)
        for code in codes:
            reason = code if code in IMAGE_FAILURE_REASONS else "other"
            self.images_failed.labels(model.name, version, reason).inc()

    def model_retired(self, model: LoadedModel) -> None:
        """Drops a version's gauges (zeroes them where removal is impossible: multiprocess)."""
        name, version = model.name, str(model.version)
        series = [
            (self.model_info, (name, version, model.provider, model.metadata.objective)),
            (self.model_threshold, (name, version)),
            (self.model_expected_anomaly_rate, (name, version)),
            (self.model_expected_anomaly_rate_lower, (name, version)),
            (self.model_expected_anomaly_rate_upper, (name, version)),
        ]
        for gauge, labels in series:
            if self.multiprocess:
                gauge.labels(*labels).set(0)
            else:
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
