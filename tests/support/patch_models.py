"""A tiny patch model in the SPEC's model file, exported from torch: a conv net whose graph
returns `score` [N], `embedding` [N, D] and `anomaly_map` [N, h, w], with `kind: patch` and
its `patch` record. Untrained (training a real one, `training/patch`, takes about 40 s here):
what the service does with a map needs only the contract, and a known map.

The net: one 4x4 stride-4 convolution (each cell sees its own 4x4 pixels, so a bright square
planted at a corner lights that corner's cells), a 1x1 convolution, then per cell the squared
distance to a centre; the score is the map's max and the embedding the mean feature. The input
is 32 high and 48 wide, so the map is 8 x 12: a swapped width and height shows.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from modelfile import ANOMALY_MAP_OUTPUT, EMBEDDING_OUTPUT, INPUT_NAME, SCORE_OUTPUT
from modelfile.metadata import METADATA_KEY, ModelMetadata

HEIGHT, WIDTH, CELL = 32, 48, 4
MAP_SHAPE = (HEIGHT // CELL, WIDTH // CELL)
FEATURES = 6
# The metadata's `patch` record (modelfile.metadata.PatchInfo) of the tiny net.
PATCH_RECORD = {
    "size": CELL,
    "stride": CELL,
    "grid": list(MAP_SHAPE),
    "coreset": 1,
    "bank": 1,
    "dims": FEATURES,
    "score": "max over the anomaly map of ||phi(patch) - c||^2",
}


@dataclass(frozen=True)
class PatchModel:
    """A written patch model file."""

    name: str
    version: int
    path: Path
    channels: int
    thresholds: dict[str, float]


def _net(channels: int, seed: int) -> Any:
    import torch
    from torch import nn

    class TinyPatchNet(nn.Module):
        c: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.cells = nn.Conv2d(channels, FEATURES, CELL, stride=CELL)
            self.mix = nn.Conv2d(FEATURES, FEATURES, 1)
            self.register_buffer("c", torch.zeros(1, FEATURES, 1, 1))

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            features = self.mix(torch.relu(self.cells(image)))  # (N, D, h, w)
            cells = ((features - self.c) ** 2).sum(dim=1)  # (N, h, w)
            return cells.amax(dim=(1, 2)), features.mean(dim=(2, 3)), cells

    torch.manual_seed(seed)
    net = TinyPatchNet().eval()
    with torch.no_grad():
        net.c.copy_(net(torch.full((1, channels, HEIGHT, WIDTH), 0.5))[1].view(1, -1, 1, 1))
    return net


def _export(net: Any, channels: int, path: Path) -> onnx.ModelProto:
    """The net's graph, exported (TorchScript exporter: quicker than dynamo) through `path`."""
    import torch

    sample = torch.rand(2, channels, HEIGHT, WIDTH)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (sample,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[SCORE_OUTPUT, EMBEDDING_OUTPUT, ANOMALY_MAP_OUTPUT],
            dynamic_axes={
                INPUT_NAME: {0: "N"},
                SCORE_OUTPUT: {0: "N"},
                EMBEDDING_OUTPUT: {0: "N"},
                ANOMALY_MAP_OUTPUT: {0: "N"},
            },
            dynamo=False,
        )
    return onnx.load(str(path))


def patch_metadata(
    name: str, version: int, center: list[float], thresholds: dict[str, float], channels: int
) -> dict[str, Any]:
    """A valid `deepsvdd` entry of kind patch for the tiny net."""
    return {
        "format_version": 1,
        "name": name,
        "kind": "patch",
        "version": version,
        "created": "2026-01-01T00:00:00Z",
        "objective": "one-class",
        "nu": 0.1,
        "center": center,
        "radius": None,
        "thresholds": thresholds,
        "expected_anomaly_rate": {"q0.9": 0.1, "q0.95": 0.05, "max": 0.0},
        "default_threshold": "q0.95",
        "input": {
            "channels": channels,
            "height": HEIGHT,
            "width": WIDTH,
            "color": "L" if channels == 1 else "RGB",
        },
        "dataset": {"name": "synthetic", "normal_class": 0, "n_train": 64},
        "metrics": {"auc": 0.9},
        "patch": PATCH_RECORD,
        "training": {"epochs": 0},
        "software": {"test": "1"},
    }


def build_patch_model(
    models_dir: Path, name: str = "patches", version: int = 1, *, channels: int = 1, seed: int = 0
) -> PatchModel:
    """Writes `models_dir/name/version/model.onnx`; thresholds are quantiles of noise scores."""
    import torch

    net = _net(channels, seed)
    noise = torch.rand(64, channels, HEIGHT, WIDTH)
    with torch.no_grad():
        scores = net(noise)[0].double().numpy()
    thresholds = {
        "q0.9": float(np.quantile(scores, 0.9)),
        "q0.95": float(np.quantile(scores, 0.95)),
        "max": float(scores.max()),
    }
    center = [float(v) for v in net.c.flatten()]
    meta = patch_metadata(name, version, center, thresholds, channels)
    ModelMetadata.model_validate(meta)
    path = models_dir / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    model = _export(net, channels, path)
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return PatchModel(name, version, path, channels, thresholds)
