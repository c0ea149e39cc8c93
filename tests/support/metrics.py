"""Prometheus lookups for the tests: bench/harness/metrics.py's, shared with the experiments."""

from __future__ import annotations

from bench.harness.metrics import declared, metric_value, metric_value_or_zero

__all__ = ["declared", "metric_value", "metric_value_or_zero"]
