"""Scores a defects dataset's test images with a model file in ONNX Runtime: image scores,
and maps (the graph's `anomaly_map` where it has one, occlusion maps otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.defects.surfaces import read_mask
from modelfile import ANOMALY_MAP_OUTPUT, INPUT_NAME, SCORE_OUTPUT
from modelfile.pixels import to_input
from service.explain import explain_batch, maps_from_scores
from training.data.images import read_image

CHUNK = 64  # images (or occluded copies) per inference


@dataclass(frozen=True)
class Scored:
    """One test class: its files, image scores, maps (h, w grids) and masks (image size)."""

    kind: str
    names: list[str]
    scores: np.ndarray
    maps: list[np.ndarray]
    masks: list[np.ndarray]


def session(model: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def input_size(sess: ort.InferenceSession) -> int:
    """The model's square input side, from the graph's input shape."""
    shape = sess.get_inputs()[0].shape
    if not isinstance(shape[2], int) or shape[2] != shape[3]:
        raise ValueError(f"model input shape {shape} is not a fixed square image")
    return int(shape[2])


def has_map(sess: ort.InferenceSession) -> bool:
    return ANOMALY_MAP_OUTPUT in {o.name for o in sess.get_outputs()}


def run_scores(sess: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
    """`score` of float32 (N, C, H, W), in chunks."""
    parts = [
        sess.run([SCORE_OUTPUT], {INPUT_NAME: batch[s : s + CHUNK]})[0]
        for s in range(0, len(batch), CHUNK)
    ]
    return np.concatenate(parts)


def graph_maps(sess: ort.InferenceSession, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`score` and `anomaly_map` of the graph itself, one inference per chunk."""
    scores, maps = [], []
    for s in range(0, len(batch), CHUNK):
        score, grid = sess.run(
            [SCORE_OUTPUT, ANOMALY_MAP_OUTPUT], {INPUT_NAME: batch[s : s + CHUNK]}
        )
        scores.append(score)
        maps.append(grid)
    return np.concatenate(scores), np.concatenate(maps)


def occlusion_maps(sess: ort.InferenceSession, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores and occlusion maps (service/explain.py: 1 + 169 inferences an image)."""
    scores, maps = [], []
    for image in batch:
        stacked, grid = explain_batch(image[None])
        all_scores = run_scores(sess, stacked)
        scores.append(all_scores[:1])
        maps.append(maps_from_scores(all_scores[:1], all_scores[1:], grid))
    return np.concatenate(scores), np.concatenate(maps)


def score_kind(sess: ort.InferenceSession, root: Path, kind: str, with_maps: bool = True) -> Scored:
    """Scores test/<kind>: maps from the graph, or by occlusion (when `with_maps`)."""
    paths = sorted((root / "test" / kind).iterdir())
    size = input_size(sess)
    batch = to_input(np.stack([read_image(p, "L", size) for p in paths]))
    if has_map(sess):
        scores, maps = graph_maps(sess, batch)
    elif with_maps:
        scores, maps = occlusion_maps(sess, batch)
    else:
        scores, maps = run_scores(sess, batch), np.empty((len(batch), 0, 0))
    names = [p.name for p in paths]
    masks = [read_mask(root, kind, name) for name in names]
    return Scored(kind, names, scores, list(maps), masks)
