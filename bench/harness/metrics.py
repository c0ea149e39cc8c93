"""Lookups in a Prometheus text exposition (experiments and tests) that fail when the series
asked for is not there, so that a renamed or dropped metric fails instead of reading as zero."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# What prometheus_client appends to a family's name to name its samples.
_SUFFIXES = ("", "_total", "_count", "_sum", "_bucket", "_created", "_gcount", "_gsum", "_info")


def _matches(text: str, name: str, labels: dict[str, str]) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def declared(text: str, name: str) -> bool:
    """Whether the exposition declares the family of sample `name` (`# TYPE` line), with or
    without series."""
    return any(
        name == family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in _SUFFIXES
    )


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of the first sample `name` whose labels include `labels`; raises when none."""
    found = _matches(text, name, labels)
    if not found:
        what = "has no series with those labels" if declared(text, name) else "is not exported"
        raise AssertionError(f"metric {name}{labels or ''} {what}")
    return found[0]


def metric_value_or_zero(text: str, name: str, **labels: str) -> float:
    """As `metric_value`, but 0.0 for a labelled series not yet created (a counter or
    histogram child appears at its first use); the family itself must be declared."""
    if not declared(text, name):
        raise AssertionError(f"metric {name} is not exported")
    found = _matches(text, name, labels)
    return found[0] if found else 0.0
