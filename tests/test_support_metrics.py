"""The metric lookups of tests/support fail on a missing series instead of reading zero."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tests.support.metrics import declared, metric_value, metric_value_or_zero


def _exposition() -> str:
    registry = CollectorRegistry()
    Gauge("demo_depth", "Depth.", registry=registry).set(3)
    Counter("demo_scored", "Scored.", ["model"], registry=registry).labels("a").inc(2)
    Counter("demo_failures", "Failures.", ["model"], registry=registry)  # no series yet
    Histogram("demo_size", "Size.", ["model"], buckets=(1, 4), registry=registry)
    return generate_latest(registry).decode()


def test_a_present_series_is_read() -> None:
    text = _exposition()
    assert metric_value(text, "demo_depth") == 3
    assert metric_value(text, "demo_scored_total", model="a") == 2
    assert metric_value_or_zero(text, "demo_scored_total", model="a") == 2


def test_a_missing_series_or_metric_raises() -> None:
    text = _exposition()
    with pytest.raises(AssertionError, match="no series with those labels"):
        metric_value(text, "demo_scored_total", model="b")
    with pytest.raises(AssertionError, match="not exported"):
        metric_value(text, "demo_renamed_total")


def test_or_zero_reads_zero_only_for_a_declared_family() -> None:
    text = _exposition()
    assert declared(text, "demo_failures_total") and declared(text, "demo_size_count")
    assert metric_value_or_zero(text, "demo_failures_total", model="a") == 0.0
    assert metric_value_or_zero(text, "demo_size_count", model="a") == 0.0
    with pytest.raises(AssertionError, match="not exported"):
        metric_value_or_zero(text, "demo_renamed_total", model="a")
