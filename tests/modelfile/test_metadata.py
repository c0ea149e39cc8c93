"""The `deepsvdd` metadata schema: what it accepts, what it refuses and how it says so, and
the one rule that turns a requested threshold into a value."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modelfile.metadata import (
    CUSTOM_THRESHOLD,
    METADATA_KEY,
    Calibration,
    MetadataError,
    ModelMetadata,
    is_valid_name,
    resolve_threshold,
)
from tests.support.models import metadata

THRESHOLDS = {"q0.9": 1.0, "q0.95": 2.0, "q0.99": 3.0, "max": 4.0}


def _raw(**overrides: Any) -> dict[str, Any]:
    return {**metadata("parts", 3, np.zeros(8), THRESHOLDS, channels=1), **overrides}


def _meta(**overrides: Any) -> ModelMetadata:
    return ModelMetadata.model_validate(_raw(**overrides))


def test_metadata_round_trips_through_json() -> None:
    meta = _meta(extra_field={"kept": True})
    again = ModelMetadata.from_json(meta.to_json())
    assert again == meta and again.rep_dim == 8
    assert again.model_dump()["extra_field"] == {"kept": True}  # newer writers' fields survive
    assert again.calibration is None  # models made before calibration was recorded


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("fashion-mnist-bag", True),
        ("a", True),
        ("m1.v2_x", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("Parts", False),
        ("-parts", False),
        ("a..b", False),
        ("a/b", False),
    ],
)
def test_names_are_short_lower_case_and_free_of_path_separators(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid


def test_a_bad_name_is_refused_with_the_pattern() -> None:
    with pytest.raises(MetadataError, match="invalid at name"):
        ModelMetadata.from_json(json.dumps(_raw(name="../etc")))


def test_missing_or_unparsable_metadata_names_the_problem() -> None:
    with pytest.raises(MetadataError, match=f"no '{METADATA_KEY}' entry"):
        ModelMetadata.from_json(None)
    with pytest.raises(MetadataError, match="is not JSON"):
        ModelMetadata.from_json("{nope")


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"format_version": 2}, "format_version"),
        ({"center": [0.0, float("nan")]}, "center"),
        ({"center": []}, "center"),
        ({"thresholds": {"q0.95": -1.0}, "default_threshold": "q0.95"}, "thresholds"),
        ({"nu": 0.0}, "nu"),
        ({"version": 0}, "version"),
        ({"input": {"channels": 3, "height": 28, "width": 28, "color": "L"}}, "input"),
        ({"dataset": {"name": "x", "normal_class": 0, "n_train": 0}}, "dataset.n_train"),
    ],
)
def test_values_outside_the_schema_are_refused_where_they_are(
    overrides: dict[str, Any], where: str
) -> None:
    with pytest.raises(MetadataError, match=f"invalid at {where}"):
        ModelMetadata.from_json(json.dumps(_raw(**overrides)))


def test_the_default_threshold_must_be_one_of_the_thresholds() -> None:
    with pytest.raises(MetadataError, match=r"'q0\.5' is not one of"):
        ModelMetadata.from_json(json.dumps(_raw(default_threshold="q0.5")))


def test_the_objective_decides_the_radius() -> None:
    soft = {"objective": "soft-boundary", "radius": 1.5}
    meta = _meta(**soft, thresholds={**THRESHOLDS, "radius": 2.25})
    assert meta.radius == 1.5
    with pytest.raises(ValueError, match="needs the threshold 'radius'"):
        _meta(**soft)
    with pytest.raises(ValueError, match="needs a finite radius"):
        _meta(objective="soft-boundary", radius=None, thresholds={**THRESHOLDS, "radius": 1.0})
    with pytest.raises(ValueError, match="one-class model has no radius"):
        _meta(radius=1.0)


def test_a_calibration_record_is_validated() -> None:
    record = {"n": 40, "method": "holdout", "rate_interval": {"q0.95": [0.0061, 0.1692]}}
    meta = _meta(calibration=record)
    assert meta.calibration is not None and meta.calibration == Calibration.model_validate(record)
    assert meta.calibration.confidence == 0.95 and meta.calibration.folds is None
    for bad in ([0.2, 0.1], [0.1], [0.0, 1.5], [-0.1, 0.1]):
        with pytest.raises(ValueError, match=r"rate_interval\['q0.95'\]"):
            _meta(calibration={**record, "rate_interval": {"q0.95": bad}})
    with pytest.raises(ValueError, match="method"):
        _meta(calibration={**record, "method": "guess"})


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, ("q0.95", 2.0)),
        ("q0.99", ("q0.99", 3.0)),
        ("max", ("max", 4.0)),
        ("0.5", (CUSTOM_THRESHOLD, 0.5)),
        ("0", (CUSTOM_THRESHOLD, 0.0)),
        ("1e3", (CUSTOM_THRESHOLD, 1000.0)),
    ],
)
def test_a_threshold_is_a_name_of_the_model_or_a_number(
    requested: str | None, expected: tuple[str, float]
) -> None:
    assert resolve_threshold(_meta(), requested) == expected


@pytest.mark.parametrize("requested", ["-1", "-0.001", "nan", "inf", "q0.5", "radius", ""])
def test_a_negative_non_finite_or_unknown_threshold_names_the_choices(requested: str) -> None:
    with pytest.raises(ValueError, match=r"neither a non-negative number nor one of \['max',"):
        resolve_threshold(_meta(), requested)
