"""Typed answers of `POST /score`."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class AnomalyMap:
    """A patch model's own grid of patch scores, else an occlusion map at the model's input
    size; row-major, higher = more anomalous."""

    width: int
    height: int
    values: list[float]
    png: str  # base64

    def array(self) -> np.ndarray:
        """float32 `(height, width)`."""
        return np.asarray(self.values, dtype=np.float32).reshape(self.height, self.width)

    def png_bytes(self) -> bytes:
        """The overlay of the map on the image, as PNG bytes."""
        return base64.b64decode(self.png)


@dataclass(frozen=True)
class ImageResult:
    index: int
    filename: str | None
    score: float
    is_anomaly: bool
    anomaly_map: AnomalyMap | None = None


@dataclass(frozen=True)
class Threshold:
    name: str
    value: float


@dataclass(frozen=True)
class ScoreResult:
    model: str
    version: int
    threshold: Threshold
    results: list[ImageResult]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ScoreResult:
        return cls(
            model=body["model"],
            version=body["version"],
            threshold=Threshold(**body["threshold"]),
            results=[
                ImageResult(
                    index=r["index"],
                    filename=r["filename"],
                    score=r["score"],
                    is_anomaly=r["is_anomaly"],
                    anomaly_map=AnomalyMap(**r["anomaly_map"]) if "anomaly_map" in r else None,
                )
                for r in body["results"]
            ],
        )
