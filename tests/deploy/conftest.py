"""Fixtures for the deployment tests: a tiny valid model repository for `deepsvdd serve`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelfile.metadata import METADATA_KEY, DatasetInfo, InputSpec, ModelMetadata

SIDE = 28
REP_DIM = 8


def _graph(weights: np.ndarray, center: np.ndarray) -> onnx.GraphProto:
    """image [N,1,28,28] -> Flatten -> MatMul -> embedding [N,8] -> ||e - c||^2 -> score [N]."""
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["embedding"]),
        helper.make_node("Sub", ["embedding", "center"], ["offset"]),
        helper.make_node("Mul", ["offset", "offset"], ["squared"]),
        helper.make_node("ReduceSum", ["squared", "sum_axes"], ["score"], keepdims=0),
    ]
    initializers = [
        numpy_helper.from_array(weights, "weights"),
        numpy_helper.from_array(center, "center"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "sum_axes"),
    ]
    return helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, SIDE, SIDE])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", REP_DIM]),
        ],
        initializers,
    )


def _metadata(center: np.ndarray, normal_scores: np.ndarray) -> ModelMetadata:
    q95, q99 = (float(q) for q in np.quantile(normal_scores, [0.95, 0.99]))
    return ModelMetadata(
        name="tiny",
        version=1,
        created=datetime.now(UTC).isoformat(),
        objective="one-class",
        nu=0.1,
        center=[float(v) for v in center],
        radius=None,
        thresholds={"q95": q95, "q99": q99},
        expected_anomaly_rate={"q95": 0.05, "q99": 0.01},
        default_threshold="q95",
        input=InputSpec(channels=1, height=SIDE, width=SIDE, color="L"),
        dataset=DatasetInfo(name="synthetic", normal_class=0, n_train=64),
    )


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding `tiny/1/model.onnx`, a valid Deep SVDD model file."""
    rng = np.random.default_rng(0)
    weights = rng.normal(0.0, 0.05, size=(SIDE * SIDE, REP_DIM)).astype(np.float32)
    center = rng.normal(0.0, 0.1, size=REP_DIM).astype(np.float32)
    images = rng.random((64, SIDE * SIDE), dtype=np.float32)
    normal_scores = (((images @ weights) - center) ** 2).sum(axis=1)

    model = helper.make_model(
        _graph(weights, center), opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    )
    meta = _metadata(center, normal_scores)
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)

    root = tmp_path_factory.mktemp("deploy") / "models"
    path = root / "tiny" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    onnx.save(model, path)
    return root
