"""Adds the drift reference to the shipped models in place, without retraining
(`python -m training.shipped --add-reference`).

The hold-out is not stored, so it is drawn again: the same dataset, split function and seed as
`training.shipped` trained with. Its scores, from ONNX Runtime, must give back the stored q0.95
threshold: that proves it is the same hold-out before the reference is written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelfile import INPUT_NAME, MODEL_FILE, SCORE_OUTPUT
from modelfile.layout import write_atomic
from modelfile.metadata import METADATA_KEY, ModelMetadata
from modelfile.onnx_props import read_props, set_prop
from modelfile.pixels import to_input
from modelfile.reference import REFERENCE_SIZE, reference_sample
from training.advice import Notes
from training.calibration import trained_thresholds
from training.config import RunSpec
from training.data import resolve_class
from training.run import load_training_data, split_normal

CHECKED = "q0.95"
REL_TOLERANCE = 1e-4  # ONNX Runtime against the torch scores the threshold came from
BATCH = 512


def holdout_images(normal_class: str, data_dir: Path | None, seed: int) -> np.ndarray:
    """The normal images `training.shipped` held out for the class: same split, same seed."""
    spec = RunSpec(dataset="fashion-mnist", normal_class=normal_class, data_dir=data_dir)
    data = load_training_data(spec, seed, Notes(status=False))
    split = split_normal(data, resolve_class(data, normal_class), spec.holdout, seed)
    return np.asarray(split.holdout)


def onnx_scores(model: bytes, images: np.ndarray) -> np.ndarray:
    """The model file's `score` of uint8 (N, H, W, C) images, in batches, on the CPU."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    parts = [
        session.run([SCORE_OUTPUT], {INPUT_NAME: to_input(images[i : i + BATCH])})[0]
        for i in range(0, len(images), BATCH)
    ]
    return np.concatenate(parts).astype(np.float64)


def checked_holdout(meta: ModelMetadata, scores: np.ndarray) -> float:
    """q0.95 of the redrawn hold-out's scores; raises unless it is the stored one."""
    recomputed = trained_thresholds(scores, None)[CHECKED]
    stored = meta.thresholds[CHECKED]
    if not math.isclose(recomputed, stored, rel_tol=REL_TOLERANCE):
        raise ValueError(
            f"{meta.name}: the redrawn hold-out gives {CHECKED} = {recomputed:.6g}, the model "
            f"stores {stored:.6g}: not the hold-out it was trained with"
        )
    return recomputed


def with_reference(model: bytes, meta: ModelMetadata, scores: np.ndarray) -> bytes:
    """The model file with `score_reference` from `scores`."""
    data = meta.model_dump(mode="json")
    data["score_reference"] = reference_sample(scores)
    return set_prop(model, METADATA_KEY, ModelMetadata.model_validate(data).to_json())


def add_reference(model_dir: Path, normal_class: str, data_dir: Path | None, seed: int) -> str:
    """Writes the reference into each version of one shipped model; a line saying what it did."""
    images = holdout_images(normal_class, data_dir, seed)
    lines = []
    for path in sorted(model_dir.glob(f"*/{MODEL_FILE}")):
        model = path.read_bytes()
        meta = ModelMetadata.from_json(read_props(model).get(METADATA_KEY))
        scores = onnx_scores(model, images)
        recomputed = checked_holdout(meta, scores)
        write_atomic(path, with_reference(model, meta, scores))
        lines.append(
            f"{path}: {min(len(scores), REFERENCE_SIZE)} reference scores; {CHECKED} stored "
            f"{meta.thresholds[CHECKED]:.7g}, from the redrawn hold-out {recomputed:.7g}"
        )
    return "; ".join(lines)
