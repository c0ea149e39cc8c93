"""The model repository: discovery, validation against the metadata, refusals, providers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from modelfile.metadata import METADATA_KEY
from service.repository import (
    INVALID_NAME,
    ModelLoadError,
    RepositoryError,
    SessionConfig,
    available_providers,
    load_model,
    load_repository,
)
from tests.support.models import ModelRepo, build_model, graph_model, metadata

CPU = SessionConfig(providers=["CPUExecutionProvider"], intra_op_threads=1)


def _write(model: onnx.ModelProto, models_dir: Path, name: str, version: int) -> Path:
    path = models_dir / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _tiny(channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    dim = channels * (28 * 28 if channels == 1 else 32 * 32)
    return rng.normal(size=(dim, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)


def test_loads_every_version_latest_by_default(model_repo: ModelRepo) -> None:
    repo, failures = load_repository(model_repo.path, CPU)
    assert failures == []
    assert repo.names() == ["colour", "digits"]
    assert repo.versions("digits") == [1, 2] and len(repo) == 3
    latest = repo.get("digits")
    assert latest is not None and latest.version == 2
    pinned = repo.get("digits", 1)
    assert pinned is not None and pinned.version == 1
    assert repo.get("digits", 3) is None and repo.get("nope") is None
    assert repo.default_name(None) == "colour" and repo.default_name("digits") == "digits"


def test_scores_match_the_reference(model_repo: ModelRepo) -> None:
    repo, _ = load_repository(model_repo.path, CPU)
    model = repo.get("colour")
    assert model is not None
    pixels = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    images = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    expected = model_repo.model("colour", 1).reference(pixels)
    np.testing.assert_allclose(model.run(images), expected, rtol=1e-5)


def test_request_names_never_become_paths(model_repo: ModelRepo) -> None:
    repo, _ = load_repository(model_repo.path, CPU)
    for hostile in ("../digits", "digits/../colour", "/etc/passwd", "digits/1", "", "DIGITS"):
        assert repo.get(hostile) is None
        assert repo.versions(hostile) == []


def test_broken_models_are_refused_and_the_rest_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_model(tmp_path, "good", 1)
    (tmp_path / "garbage" / "1").mkdir(parents=True)
    (tmp_path / "garbage" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    weights, center = _tiny()
    thresholds = {"q0.95": 1.0}
    _write(graph_model(weights, center, ["N", 1, 28, 28], None), tmp_path, "nometa", 1)
    wrong_name = metadata("other", 1, center, thresholds, 1)
    _write(graph_model(weights, center, ["N", 1, 28, 28], wrong_name), tmp_path, "misnamed", 1)
    shapes = metadata("shapes", 1, center, thresholds, 3)
    _write(graph_model(weights, center, ["N", 1, 28, 28], shapes), tmp_path, "shapes", 1)
    fixed = metadata("fixed", 1, center, thresholds, 1)
    _write(graph_model(weights, center, [4, 1, 28, 28], fixed), tmp_path, "fixed", 1)
    invalid_meta = graph_model(weights, center, ["N", 1, 28, 28], None)
    onnx.helper.set_model_props(invalid_meta, {METADATA_KEY: json.dumps({"name": "badmeta"})})
    _write(invalid_meta, tmp_path, "badmeta", 1)
    (tmp_path / "Bad Name" / "1").mkdir(parents=True)
    (tmp_path / "good" / "latest").mkdir()
    (tmp_path / "good" / "7").mkdir()  # being written: no model.onnx yet

    with caplog.at_level(logging.ERROR, logger="service.repository"):
        repo, failures = load_repository(tmp_path, CPU)

    assert repo.names() == ["good"] and repo.versions("good") == [1]
    reasons = {(f.model, f.version): f.reason for f in failures}
    assert "ONNX Runtime cannot load it" in reasons[("garbage", "1")]
    assert "no 'deepsvdd' entry" in reasons[("nometa", "1")]
    assert "names 'other'" in reasons[("misnamed", "1")]
    assert "shape" in reasons[("shapes", "1")]
    assert "fixed batch size" in reasons[("fixed", "1")]
    assert "invalid at" in reasons[("badmeta", "1")]
    assert "not a model name" in reasons[(INVALID_NAME, "")]
    assert "'latest' is not an integer" in reasons[("good", "")]
    assert len(failures) == 8
    for model in ("garbage", "nometa", "misnamed", "shapes", "fixed", "badmeta"):
        assert any(model in record.getMessage() for record in caplog.records)


def test_a_broken_file_keeps_the_previous_session(own_repo: ModelRepo) -> None:
    first, _ = load_repository(own_repo.path, CPU)
    old = first.get("digits", 2)
    own_repo.model("digits", 2).path.write_bytes(b"broken on purpose")
    second, failures = load_repository(own_repo.path, CPU, previous=first)
    assert second.get("digits", 2) is old
    assert [(f.model, f.version) for f in failures] == [("digits", "2")]
    assert "keeps serving" in failures[0].reason
    fresh, _ = load_repository(own_repo.path, CPU)
    latest = fresh.get("digits")
    assert latest is not None and latest.version == 1


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        load_repository(tmp_path / "absent", CPU)


def test_load_model_checks_the_outputs(tmp_path: Path) -> None:
    path = build_model(tmp_path, "digits", 1).path
    model = onnx.load(str(path))
    model.graph.output.pop()  # drop `embedding`
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="no output 'embedding'"):
        load_model(path, "digits", 1, CPU)


def test_providers_fall_back_to_the_cpu(model_repo: ModelRepo) -> None:
    assert available_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]
    chosen = available_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert chosen[-1] == "CPUExecutionProvider"
    gpu_first = SessionConfig(providers=chosen, intra_op_threads=1)
    repo, failures = load_repository(model_repo.path, gpu_first)
    assert failures == []
    for model in repo.all():
        active = tuple(model.session.get_providers())
        assert model.providers == active and model.provider == active[0]
