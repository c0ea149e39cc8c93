"""The protobuf edit of `metadata_props`: onnx and ONNX Runtime read the result, graph unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modelfile.onnx_props import read_props, set_prop
from tests.support.models import build_model


@pytest.fixture
def model_bytes(tmp_path: Path) -> bytes:
    path = build_model(tmp_path, "tiny", 1).path
    model = onnx.load(str(path))
    model.metadata_props.add(key="other", value="kept")
    return model.SerializeToString()


def test_set_prop_replaces_one_entry_and_keeps_the_rest(model_bytes: bytes) -> None:
    edited = set_prop(model_bytes, "deepsvdd", '{"new": true}')
    model, before = onnx.load_from_string(edited), onnx.load_from_string(model_bytes)
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {"deepsvdd": '{"new": true}', "other": "kept"}
    assert model.graph.SerializeToString() == before.graph.SerializeToString()
    assert (model.ir_version, list(model.opset_import)) == (
        before.ir_version,
        list(before.opset_import),
    )
    assert read_props(edited) == props
    onnx.checker.check_model(model)


def test_onnx_runtime_reads_the_new_entry_and_scores_the_same(model_bytes: bytes) -> None:
    edited = set_prop(set_prop(model_bytes, "deepsvdd", "é" * 300), "added", "x")
    old = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(edited, providers=["CPUExecutionProvider"])
    meta = new.get_modelmeta().custom_metadata_map
    assert meta["deepsvdd"] == "é" * 300 and meta["added"] == "x" and meta["other"] == "kept"
    images = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert np.array_equal(old.run(None, {"image": images})[0], new.run(None, {"image": images})[0])


@pytest.mark.parametrize("data", [b"\xff" * 20, b"\x0a\x80", b"\x0f\x00\x00"])
def test_bytes_that_are_no_model_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not an ONNX model"):
        set_prop(data, "deepsvdd", "{}")
