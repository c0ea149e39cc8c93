"""The same costs measured in-process, where a busy machine blurs them less: the time drift and
traces add to one request (`Metrics.scored`, the spans of a request), and a drift refresh, each
the median of repeated timings, beside the time a request costs the service with both off."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from service.drift import DriftSettings
from service.metrics import Metrics
from service.repository import LoadedModel, SessionConfig, load_repository

REPEATS = 2000


def per_call_us(call: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median microseconds of `call` over batches of 20 calls (timer overhead spread out)."""
    timings = []
    for _ in range(repeats // 20):
        began = time.perf_counter()
        for _ in range(20):
            call()
        timings.append((time.perf_counter() - began) / 20)
    return round(statistics.median(timings) * 1e6, 2)


def load_model(models_dir: Path) -> LoadedModel:
    repository, _ = load_repository(models_dir, SessionConfig(["CPUExecutionProvider"], 1))
    (model,) = repository.all()
    return model


def drift_costs(model: LoadedModel, batch: int) -> dict[str, float]:
    """µs `Metrics.scored` takes for one request of `batch` scores, drift off and on, and µs
    of one refresh of the gauges from a full window (every 5 s and every scrape)."""
    scores = np.random.default_rng(0).gamma(2.0, 0.02, batch)
    costs = {}
    for name, size in (("off", 0), ("on", 1000)):
        metrics = Metrics(DriftSettings(size=size))
        metrics.model_served(model)
        costs[f"scored_drift_{name}_us"] = per_call_us(partial(metrics.scored, model, scores, 0.1))
    metrics = Metrics(DriftSettings(size=1000))
    metrics.model_served(model)
    metrics.scored(model, np.random.default_rng(1).gamma(2.0, 0.02, 1000), 0.1)
    costs["refresh_us"] = per_call_us(metrics.refresh_drift, 200)
    return costs


def trace_costs(model: LoadedModel, endpoint: str) -> dict[str, float]:
    """µs the spans of one traced request take on the request path and in the batcher: the
    request span with `decode` inside, and one request's queue-wait and inference spans."""
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    from service.otel import OtelTracing

    tracing = OtelTracing(Metrics().spans_dropped)
    headers = {"content-type": "multipart/form-data"}

    def request() -> None:
        with tracing.request_span("POST", "/score", headers):
            with tracing.span("decode", model):
                context = tracing.capture()
            assert context is not None
            now = time.time_ns()
            tracing.batch_spans([(context, now, 1)], model, now, now)

    try:
        return {"spans_per_request_us": per_call_us(request, 1000)}
    finally:
        tracing.shutdown()
        del os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
