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
from pathlib import Path

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from service.drift import ABOVE_QUANTILES, DriftMonitor, DriftSettings
from service.metric_table import (
    IMAGE_FAILURE_REASONS,
    METRICS,
    REJECTION_REASONS,
)
from service.repository import LoadedModel

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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


def sized_files(directory: Path) -> list[str]:
    """The workers' metric files, less any still empty: a worker that is starting (a new one
    in place of one that died, say) creates each file before it sizes it, and prometheus_client
    cannot read an empty one."""
    files = []
    for path in directory.glob("*.db"):
        with contextlib.suppress(FileNotFoundError):  # a dead worker's live gauges, removed
            if path.stat().st_size > 0:
                files.append(str(path))
    return sorted(files)


class _EveryFamily:
    """Every worker's samples merged, and each family that no worker has a sample of yet
    with its HELP and TYPE lines alone, as one process exports it: the merged files alone
    leave out a labelled family until its first observation (the batch sizes, say)."""

    def __init__(self, own: CollectorRegistry) -> None:
        self._own = own
        self._directory = Path(os.environ[MULTIPROC_ENV])

    def collect(self) -> Iterator[Metric]:
        merged = list(MultiProcessCollector.merge(sized_files(self._directory), accumulate=True))
        seen = {family.name for family in merged}
        yield from merged
        for family in self._own.collect():
            if family.name not in seen:
                yield Metric(family.name, family.documentation, family.type, family.unit)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


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
    reference: Gauge
    drift_psi: Gauge
    drift_ks: Gauge
    window_images: Gauge
    window_above: Gauge
    spans_dropped: Counter
    model_load_failures: Counter
    shadow_images: Counter
    shadow_dropped: Counter
    shadow_agreement: Gauge
    shadow_rank_correlation: Gauge

    def __init__(self, drift: DriftSettings | None = None) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_mode()
        self.drift = DriftMonitor(drift if drift is not None else DriftSettings())
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
        self.refresh_drift()
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
        if self.drift.watch(name, version, meta.score_reference):
            self.reference.labels(name, version).set(len(meta.score_reference or ()))
        for reason in IMAGE_FAILURE_REASONS:
            self.images_failed.labels(name, version, reason)

    def scored(self, model: LoadedModel, scores: np.ndarray, threshold: float) -> None:
        """Counts a request's scored images and anomalies, and their score / threshold ratios."""
        version = str(model.version)
        self.images_scored.labels(model.name, version).inc(len(scores))
        self.anomalies.labels(model.name, version).inc(int(np.count_nonzero(scores > threshold)))
        ratios = scores / threshold if threshold > 0 else np.where(scores > 0, math.inf, 0.0)
        observe_many(self.score_ratio.labels(model.name), ratios)
        if self.drift.add(model.name, version, scores):
            self.refresh_drift()

    def refresh_drift(self) -> None:
        """Sets the drift gauges from each watched version's window as it stands now."""
        for name, version, figures in self.drift.figures():
            self.window_images.labels(name, version).set(figures.n)
            self.drift_psi.labels(name, version).set(figures.psi)
            self.drift_ks.labels(name, version).set(figures.ks)
            for q in ABOVE_QUANTILES:
                self.window_above.labels(name, version, f"{q:g}").set(figures.above[q])

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
            *((g, (name, version)) for g in (self.reference, self.drift_psi, self.drift_ks)),
            (self.window_images, (name, version)),
            *((self.window_above, (name, version, f"{q:g}")) for q in ABOVE_QUANTILES),
        ]
        self.drift.forget(name, version)
        for gauge, labels in series:
            if self.multiprocess:
                gauge.labels(*labels).set(0)
            else:
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
