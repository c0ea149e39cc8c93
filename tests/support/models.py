"""Tiny real ONNX models in the SPEC's model file, and repositories of them.

The models: input `image` [N, C, H, W], outputs `score` [N] (squared distance of a random
linear embedding to a centre) and `embedding` [N, p], and a valid `deepsvdd` metadata entry.
`TinyModel.reference` computes the same score in numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from modelfile.imaging import to_model_array
from modelfile.metadata import METADATA_KEY

REP_DIM = 8
SPECS = {1: (28, 28, "L"), 3: (32, 32, "RGB")}


@dataclass(frozen=True)
class TinyModel:
    """A written model file and the numpy twin of its graph."""

    name: str
    version: int
    path: Path
    weights: np.ndarray  # (C*H*W, p)
    center: np.ndarray  # (p,)
    channels: int
    height: int
    width: int
    color: str
    thresholds: dict[str, float]

    def reference(self, pixels: np.ndarray) -> np.ndarray:
        """Scores uint8 `(n, H, W, C)` pixels as the graph does (in float64)."""
        x = pixels.astype(np.float64).transpose(0, 3, 1, 2).reshape(len(pixels), -1) / 255.0
        embedding = x @ self.weights.astype(np.float64)
        return np.sum((embedding - self.center) ** 2, axis=1)

    def reference_image(self, image: Image.Image) -> float:
        pixels = to_model_array(image, self.color, self.height, self.width)  # type: ignore[arg-type]
        return float(self.reference(pixels[None])[0])


def metadata(
    name: str, version: int, center: np.ndarray, thresholds: dict[str, float], channels: int
) -> dict[str, Any]:
    height, width, color = SPECS[channels]
    return {
        "format_version": 1,
        "name": name,
        "version": version,
        "created": "2026-01-01T00:00:00Z",
        "objective": "one-class",
        "nu": 0.1,
        "center": [float(v) for v in center],
        "radius": None,
        "thresholds": thresholds,
        "expected_anomaly_rate": {"q0.9": 0.1, "q0.95": 0.05, "q0.99": 0.01, "max": 0.0},
        "default_threshold": "q0.95",
        "input": {"channels": channels, "height": height, "width": width, "color": color},
        "dataset": {"name": "synthetic", "normal_class": 0, "n_train": 200},
        "metrics": {"auc": 0.9},
        "training": {"epochs": 0},
        "software": {"test": "1"},
    }


def graph_model(
    weights: np.ndarray, center: np.ndarray, input_shape: list[Any], meta: dict[str, Any] | None
) -> onnx.ModelProto:
    """image -> Flatten -> MatMul W -> embedding -> Sub c -> Mul self -> ReduceSum -> score."""
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["embedding"]),
        helper.make_node("Sub", ["embedding", "c"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["squared"]),
        helper.make_node("ReduceSum", ["squared", "axes"], ["score"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-deepsvdd",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape)],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", len(center)]),
        ],
        [
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(center, "c"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    if meta is not None:
        helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(model)
    return model


def build_model(
    models_dir: Path,
    name: str,
    version: int,
    *,
    channels: int = 1,
    seed: int = 0,
    meta_overrides: dict[str, Any] | None = None,
) -> TinyModel:
    """Writes `models_dir/name/version/model.onnx`; thresholds are quantiles of noise scores."""
    height, width, color = SPECS[channels]
    rng = np.random.default_rng(seed)
    dim = channels * height * width
    weights = rng.normal(0.0, 1.0 / np.sqrt(dim), (dim, REP_DIM)).astype(np.float32)
    center = rng.normal(0.0, 0.5, REP_DIM).astype(np.float32)
    probe = TinyModel(name, version, Path(), weights, center, channels, height, width, color, {})
    noise = rng.integers(0, 256, (200, height, width, channels), dtype=np.uint8)
    scores = probe.reference(noise)
    thresholds = {
        "q0.9": float(np.quantile(scores, 0.9)),
        "q0.95": float(np.quantile(scores, 0.95)),
        "q0.99": float(np.quantile(scores, 0.99)),
        "max": float(scores.max()),
    }
    meta = {**metadata(name, version, center, thresholds, channels), **(meta_overrides or {})}
    model = graph_model(weights, center, ["N", channels, height, width], meta)
    path = models_dir / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return TinyModel(
        name, version, path, weights, center, channels, height, width, color, thresholds
    )


@dataclass(frozen=True)
class ModelRepo:
    """A model repository on disk and the models written into it."""

    path: Path
    models: dict[tuple[str, int], TinyModel]

    def model(self, name: str, version: int) -> TinyModel:
        return self.models[(name, version)]


def write_repo(path: Path, *, colour: bool = True) -> ModelRepo:
    """`digits` v1 and v2 (1 x 28 x 28, L), and unless `colour=False` `colour` v1
    (3 x 32 x 32, RGB); with `digits` alone, a request naming no model gets it."""
    models = [
        build_model(path, "digits", 1, channels=1, seed=1),
        build_model(path, "digits", 2, channels=1, seed=2),
    ]
    if colour:
        models.append(build_model(path, "colour", 1, channels=3, seed=3))
    return ModelRepo(path, {(m.name, m.version): m for m in models})
