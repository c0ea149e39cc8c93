"""Scoring a dataset through ONNX Runtime with an exported model file (what serving runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modelfile import INPUT_NAME, SCORE_OUTPUT
from modelfile.layout import open_model, resolve_model_path
from modelfile.metadata import ModelMetadata
from modelfile.pixels import to_input
from training.calibration import auc_or_none
from training.data import load_dataset, resolve_class
from training.data.download import download_missing


def training_seed(meta: ModelMetadata) -> int:
    """The seed the model was trained with: it fixes held-out test splits of sources
    that have none, so evaluation never scores the model's own training images."""
    seed = meta.training.get("seed", 0)
    return seed if isinstance(seed, int) else 0


def ort_scores(session: ort.InferenceSession, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """uint8 (N, H, W, C) -> scores (N,), in batches."""
    out = []
    for start in range(0, len(images), batch):
        x = to_input(images[start : start + batch])
        out.append(session.run([SCORE_OUTPUT], {INPUT_NAME: x})[0])
    return np.concatenate(out) if out else np.empty(0, np.float32)


def evaluate(
    model: str | Path,
    dataset: str,
    normal_class: str,
    data_dir: Path | None = None,
    download: bool = False,
    models_dir: Path = Path("models"),
) -> dict[str, Any]:
    """Scores the dataset's test split with the model; AUC with normal = 0, others = 1."""
    path = resolve_model_path(model, models_dir)
    session, meta = open_model(path)
    spec = meta.input
    if download:
        download_missing(dataset, data_dir)
    data = load_dataset(
        dataset,
        data_dir,
        image_size=spec.height,
        channels=spec.channels,
        seed=training_seed(meta),
    )
    if data.x_test is None or data.y_test is None:
        raise ValueError(f"dataset {dataset!r} has no test split to evaluate on")
    if data.x_test.shape[1:3] != (spec.height, spec.width):
        raise ValueError(
            f"test images are {data.x_test.shape[1]}x{data.x_test.shape[2]}, "
            f"the model takes {spec.height}x{spec.width}"
        )
    k = resolve_class(data, normal_class)
    scores = ort_scores(session, np.asarray(data.x_test))
    labels = (data.y_test != k).astype(np.int64)
    threshold = meta.thresholds[meta.default_threshold]
    normal = labels == 0
    return {
        "model_path": str(path),
        "name": meta.name,
        "version": meta.version,
        "auc": auc_or_none(labels, scores),
        "auc_at_export": meta.metrics.get("auc"),
        "n_test": len(labels),
        "n_anomalous": int(labels.sum()),
        "default_threshold": meta.default_threshold,
        "false_positive_rate": float(np.mean(scores[normal] > threshold)) if normal.any() else None,
        "true_positive_rate": float(np.mean(scores[~normal] > threshold))
        if (~normal).any()
        else None,
    }
