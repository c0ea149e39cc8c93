"""Metric helpers without a server."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import get_type_hints

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from service.metric_table import METRICS, SCORE_RATIO_BUCKETS
from service.metrics import MULTIPROC_ENV, Metrics, observe_many, sized_files


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


def test_a_multiprocess_scrape_names_every_family(tmp_path: Path) -> None:
    """With several workers (metrics in files), a family nobody has observed yet still has
    its TYPE line, as with one process (less the `_created` time stamps, which
    multiprocess mode has none of), and the values are there."""
    families = {}
    for mode in ("single", "multi"):
        env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
        if mode == "multi":
            env[MULTIPROC_ENV] = str(tmp_path)
        code = (
            "import re\n"
            "from service.metrics import Metrics\n"
            "metrics = Metrics()\n"
            "metrics.images_scored.labels('m', '1').inc(3)\n"
            "body, _ = metrics.render()\n"
            "text = body.decode()\n"
            "names = set(re.findall(r'^# TYPE (\\S+) ', text, re.M))\n"
            "print(sorted(n for n in names if not n.endswith('_created')))\n"
            'print(\'deepsvdd_images_scored_total{model="m",version="1"} 3.0\' in text)\n'
        )
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        names, merged = done.stdout.splitlines()
        families[mode] = names
        assert merged == "True"
    assert "deepsvdd_batch_size" in families["multi"]
    assert families["multi"] == families["single"]


def test_every_row_of_the_table_fills_its_typed_attribute() -> None:
    """`Metrics` declares each metric's type; the table's row for it must build that type."""
    metrics = Metrics()
    declared = get_type_hints(Metrics)
    assert [spec.attribute for spec in METRICS] == list(declared)
    for spec in METRICS:
        assert declared[spec.attribute] is spec.kind
        assert isinstance(getattr(metrics, spec.attribute), spec.kind)


def test_a_multiprocess_scrape_passes_over_a_file_a_starting_worker_has_not_sized(
    tmp_path: Path,
) -> None:
    """A worker that starts (one replacing a dead one) creates each metrics file before it
    sizes it; a scrape at that moment reads the other files instead of failing."""
    (tmp_path / "histogram_999999.db").touch()
    assert sized_files(tmp_path) == []
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    code = (
        "from service.metrics import Metrics\n"
        "metrics = Metrics()\n"
        "metrics.images_scored.labels('m', '1').inc(2)\n"
        "body, _ = metrics.render()\n"
        'print(\'deepsvdd_images_scored_total{model="m",version="1"} 2.0\' in body.decode())\n'
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert str(tmp_path / "histogram_999999.db") not in sized_files(tmp_path)
