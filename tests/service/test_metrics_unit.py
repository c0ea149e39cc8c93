"""Metric helpers without a server."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from service.metrics import SCORE_RATIO_BUCKETS, observe_many


def _histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    return registry, Histogram("h", "h", ["m"], buckets=SCORE_RATIO_BUCKETS, registry=registry)


@pytest.mark.parametrize("seed", range(5))
def test_observe_many_equals_observe_one_by_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.gamma(2.0, 0.5, 60), SCORE_RATIO_BUCKETS, [0.0, 1e-9, 1e3]])
    bulk, one = _observed(values)
    bulk_sum, one_sum = bulk.pop('h_sum{m="a"}'), one.pop('h_sum{m="a"}')
    assert bulk == one  # every bucket and the count exactly
    assert bulk_sum == pytest.approx(one_sum, rel=1e-12)  # summed in another order


def test_observe_many_with_an_infinite_ratio() -> None:
    bulk, one = _observed(np.array([0.5, math.inf]))
    assert bulk == one


def _observed(values: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """The samples after observe_many, and after observe one value at a time."""
    bulk_registry, bulk = _histogram()
    one_registry, one = _histogram()
    observe_many(bulk.labels("a"), values)
    for value in values.tolist():
        one.labels("a").observe(value)
    return _samples(bulk_registry), _samples(one_registry)


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    """The exposition's samples, less the creation time stamps."""
    text = generate_latest(registry).decode()
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
    return {name: float(value) for name, value in pairs if "_created" not in name}


def test_observe_many_falls_back_without_the_private_counters() -> None:
    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, value: float) -> None:
            self.seen.append(value)

    plain = Plain()
    observe_many(plain, np.array([0.5, 2.0]))  # type: ignore[arg-type]
    assert plain.seen == [0.5, 2.0]
