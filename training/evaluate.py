"""Scoring a dataset through ONNX Runtime with an exported model file (what serving runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.metadata import METADATA_KEY, ModelMetadata
from training.data import load_dataset, resolve_class
from training.export import MODEL_FILE
from training.pipeline import auc_or_none


def resolve_model_path(model: str | Path, models_dir: Path = Path("models")) -> Path:
    """A model file, a model directory (latest version) or a name in the models directory."""
    path = Path(model)
    if not path.exists() and (models_dir / str(model)).is_dir():
        path = models_dir / str(model)
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        versions = sorted(
            (
                int(p.name)
                for p in path.iterdir()
                if p.name.isdigit() and (p / MODEL_FILE).is_file()
            ),
        )
        if not versions:
            raise FileNotFoundError(f"no {MODEL_FILE} under {path}")
        return path / str(versions[-1]) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model {model!r} is neither a file nor a model in {models_dir}")
    return path


def open_model(path: Path) -> tuple[ort.InferenceSession, ModelMetadata]:
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own exception types
        raise ValueError(f"{path} is not a loadable ONNX model: {exc}") from exc
    meta = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY))
    return session, meta


def training_seed(meta: ModelMetadata) -> int:
    """The seed the model was trained with: it fixes held-out test splits of sources
    that have none, so evaluation never scores the model's own training images."""
    seed = meta.training.get("seed", 0)
    return seed if isinstance(seed, int) else 0


def ort_scores(session: ort.InferenceSession, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """uint8 (N, H, W, C) -> scores (N,), in batches."""
    out = []
    for start in range(0, len(images), batch):
        x = images[start : start + batch].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        out.append(session.run(["score"], {"image": x})[0])
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
    data = load_dataset(
        dataset,
        data_dir,
        download=download,
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
    scores = ort_scores(session, data.x_test)
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
