"""The model repository layout: version numbering, atomic writes, finding and opening a model."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest

from modelfile import MODEL_FILE, layout
from modelfile.layout import (
    claim_version,
    next_version,
    open_model,
    resolve_model_path,
    triton_config,
    write_atomic,
)
from modelfile.metadata import MetadataError
from tests.support.models import build_model, graph_model


def test_versions_count_up(tmp_path: Path) -> None:
    assert claim_version(tmp_path / "m")[0] == 1
    assert claim_version(tmp_path / "m")[0] == 2
    (tmp_path / "m" / "notes").mkdir()
    assert claim_version(tmp_path / "m")[0] == 3


def test_the_next_version_follows_the_highest_number(tmp_path: Path) -> None:
    assert next_version(tmp_path) == 1
    for name in ("1", "9", "10", "x11"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert next_version(tmp_path) == 11


def test_concurrent_claims_never_share_a_version(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(lambda _: claim_version(tmp_path / "m"), range(32)))
    versions = sorted(version for version, _ in claimed)
    assert versions == list(range(1, 33))
    assert all(path == tmp_path / "m" / str(version) for version, path in claimed)


def test_a_version_taken_between_look_and_claim_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another run created version 1 after this one looked: mkdir fails and it looks again.
    (tmp_path / "1").mkdir()
    looks = iter([1, 2])
    monkeypatch.setattr(layout, "next_version", lambda model_dir: next(looks))
    assert claim_version(tmp_path) == (2, tmp_path / "2")


def test_write_atomic_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / MODEL_FILE
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == [MODEL_FILE]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    target = tmp_path / MODEL_FILE
    write_atomic(target, b"old")
    monkeypatch.setattr(os, failing, disk_full)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"new and longer")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"  # readers saw, and still see, all of the old file
    assert [p.name for p in tmp_path.iterdir()] == [MODEL_FILE]
    with pytest.raises(OSError, match="No space"), monkeypatch.context() as m:
        m.setattr(os, failing, disk_full)
        write_atomic(tmp_path / "fresh.onnx", b"data")
    assert not (tmp_path / "fresh.onnx").exists()
    assert [p.name for p in tmp_path.iterdir()] == [MODEL_FILE]


def test_a_model_is_found_by_file_directory_or_name(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for version in (2, 10):
        build_model(models, "parts", version)
    (models / "parts" / "11").mkdir()  # claimed, not yet written: not a model
    latest = models / "parts" / "10" / MODEL_FILE
    assert resolve_model_path("parts", models) == latest  # 10 after 2: numbers, not text
    assert resolve_model_path(models / "parts", models) == latest
    assert (
        resolve_model_path(str(models / "parts" / "2"), models)
        == latest.parents[1] / "2" / MODEL_FILE
    )
    assert resolve_model_path(latest, tmp_path / "elsewhere") == latest


def test_a_missing_model_is_a_file_not_found_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"no {MODEL_FILE} under"):
        resolve_model_path(tmp_path / "empty", tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a file nor a model in"):
        resolve_model_path("nosuch", tmp_path)


def test_open_model_gives_a_session_and_the_validated_metadata(tmp_path: Path) -> None:
    tiny = build_model(tmp_path, "parts", 3)
    session, meta = open_model(tiny.path)
    assert (meta.name, meta.version, meta.thresholds) == ("parts", 3, tiny.thresholds)
    pixels = np.zeros((2, 1, 28, 28), np.float32)
    assert session.run(["score"], {"image": pixels})[0].shape == (2,)


def test_open_model_refuses_other_files_and_models_without_metadata(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a loadable ONNX model"):
        open_model(junk)
    bare = tmp_path / "bare.onnx"
    weights, center = np.ones((784, 4), np.float32), np.zeros(4, np.float32)
    onnx.save(graph_model(weights, center, ["N", 1, 28, 28], None), str(bare))
    with pytest.raises(MetadataError, match="no 'deepsvdd' entry"):
        open_model(bare)


def test_triton_config_describes_the_model_directory(tmp_path: Path) -> None:
    _, meta = open_model(build_model(tmp_path, "parts", 1, channels=3).path)
    config = triton_config(meta, max_batch=32)
    assert 'name: "parts"' in config and "max_batch_size: 32" in config
    assert "dims: [ 3, 32, 32 ]" in config and f"dims: [ {meta.rep_dim} ]" in config
