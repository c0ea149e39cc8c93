"""Scoring a dataset through ONNX Runtime with an exported model file (what serving runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modelfile import INPUT_NAME, SCORE_OUTPUT
from modelfile.layout import open_model, resolve_model_path
from modelfile.metadata import ModelMetadata, resolve_threshold
from modelfile.pixels import to_input
from training.calibration import auc_or_none
from training.data import DataError, ImageSet, load_dataset, resolve_class
from training.data.download import download_missing


@dataclass(frozen=True)
class Target:
    """What to score a model on: its test images, labelled 1 where anomalous."""

    dataset: str
    class_name: str
    images: np.ndarray
    labels: np.ndarray
    skipped: int


def model_class(meta: ModelMetadata) -> str:
    """The model's normal class as the data name it: its class name, else its index."""
    info = meta.dataset
    return info.class_name if info.class_name is not None else str(info.normal_class)


def load_target(
    meta: ModelMetadata,
    dataset: str | None,
    normal_class: str | None,
    data_dir: Path | None,
    *,
    download: bool = False,
    allow_other: bool = False,
) -> Target:
    """Loads the test split the model is to be scored on: by default the model's own dataset,
    data folder and normal class; another dataset or class only with `allow_other`."""
    info, spec = meta.dataset, meta.input
    dataset = dataset or info.name
    same_data = dataset == info.name
    if not same_data and not allow_other:
        raise DataError(
            f"model {meta.name} was trained on {info.name}, not {dataset}; "
            "leave out --dataset, or pass --allow-other-class to score it anyway"
        )
    if data_dir is None and same_data and info.data_dir:
        data_dir = Path(info.data_dir)
    if download:
        download_missing(dataset, data_dir)
    data = load_dataset(
        dataset,
        data_dir,
        image_size=spec.height,
        channels=spec.channels,
        seed=training_seed(meta),
        decode=meta.decode,
    )
    if data.x_test is None or data.y_test is None:
        raise DataError(f"dataset {dataset!r} has no test split to evaluate on")
    k = _checked_class(meta, data, normal_class, allow_other or not same_data)
    labels = (data.y_test != k).astype(np.int64)
    images = np.asarray(data.x_test)  # a lazy subset of a memory map reads in here
    return Target(dataset, data.class_names[k], images, labels, len(data.skipped))


def _checked_class(
    meta: ModelMetadata, data: ImageSet, normal_class: str | None, allow_other: bool
) -> int:
    own = resolve_class(data, model_class(meta)) if not allow_other else None
    if normal_class is None:
        return own if own is not None else resolve_class(data, model_class(meta))
    k = resolve_class(data, normal_class)
    if own is not None and k != own:
        given = repr(data.class_names[k])
        if normal_class != data.class_names[k]:
            given = f"{normal_class} ({given})"
        raise DataError(
            f"--normal-class {given} contradicts model {meta.name}, trained with "
            f"{data.class_names[own]!r} as normal; leave out --normal-class, "
            "or pass --allow-other-class to score it anyway"
        )
    return k


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


@dataclass(frozen=True)
class ScoredTest:
    """A model's scores on the test split it is evaluated on, with the labels and source."""

    path: Path
    meta: ModelMetadata
    target: Target
    scores: np.ndarray

    @property
    def images(self) -> np.ndarray:
        return self.target.images

    @property
    def labels(self) -> np.ndarray:
        return self.target.labels


def score_test_split(
    model: str | Path,
    dataset: str | None = None,
    normal_class: str | None = None,
    data_dir: Path | None = None,
    download: bool = False,
    models_dir: Path = Path("models"),
    *,
    allow_other: bool = False,
) -> ScoredTest:
    """Opens the model, loads its test split (`load_target`) and scores it through ONNX
    Runtime: what `evaluate` measures and `report` draws."""
    path = resolve_model_path(model, models_dir)
    session, meta = open_model(path)
    target = load_target(
        meta, dataset, normal_class, data_dir, download=download, allow_other=allow_other
    )
    return ScoredTest(path, meta, target, ort_scores(session, target.images))


def evaluate(
    model: str | Path,
    dataset: str | None = None,
    normal_class: str | None = None,
    data_dir: Path | None = None,
    download: bool = False,
    models_dir: Path = Path("models"),
    *,
    allow_other: bool = False,
    threshold: str | None = None,
) -> dict[str, Any]:
    """Scores the dataset's test split with the model; AUC with normal = 0, others = 1."""
    scored = score_test_split(
        model, dataset, normal_class, data_dir, download, models_dir, allow_other=allow_other
    )
    meta, target, scores, labels = scored.meta, scored.target, scored.scores, scored.labels
    name, value = resolve_threshold(meta, threshold)
    normal = labels == 0
    return {
        "model_path": str(scored.path),
        "name": meta.name,
        "version": meta.version,
        "dataset": target.dataset,
        "normal_class": target.class_name,
        "auc": auc_or_none(labels, scores),
        "auc_at_export": meta.metrics.get("auc"),
        "n_test": len(labels),
        "n_anomalous": int(labels.sum()),
        "n_skipped": target.skipped,
        "threshold": name,
        "threshold_value": value,
        "default_threshold": meta.default_threshold,
        "false_positive_rate": float(np.mean(scores[normal] > value)) if normal.any() else None,
        "true_positive_rate": float(np.mean(scores[~normal] > value)) if (~normal).any() else None,
    }
