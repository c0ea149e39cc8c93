"""What a model file must hold to be served: the graph's input and outputs as its metadata and
the SPEC promise, and a warm-up inference that runs and gives a finite score."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort

from modelfile import ANOMALY_MAP_OUTPUT, EMBEDDING_OUTPUT, INPUT_NAME, SCORE_OUTPUT
from modelfile.metadata import ModelMetadata

log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """A model file that cannot be served; the message says why."""


def _check_input(session: ort.InferenceSession, meta: ModelMetadata) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ModelLoadError(
            f"the graph must have one input {INPUT_NAME!r}, not {[i.name for i in inputs]}"
        )
    image = inputs[0]
    if image.type != "tensor(float)":
        raise ModelLoadError(f"input {INPUT_NAME!r} is {image.type}, not tensor(float)")
    spec = meta.input
    expected = [spec.channels, spec.height, spec.width]
    if len(image.shape) != 4 or list(image.shape[1:]) != expected:
        raise ModelLoadError(
            f"input {INPUT_NAME!r} has shape {image.shape}, metadata says [N, {expected[0]}, "
            f"{expected[1]}, {expected[2]}]"
        )
    if isinstance(image.shape[0], int):
        raise ModelLoadError(f"input {INPUT_NAME!r} has a fixed batch size {image.shape[0]}")


def check_io(session: ort.InferenceSession, meta: ModelMetadata) -> bool:
    """Raises `ModelLoadError` unless the graph's input and outputs are what `meta` and the
    SPEC promise; True when the graph has an `anomaly_map` output (a patch model must)."""
    _check_input(session, meta)
    outputs = {o.name: o for o in session.get_outputs()}
    wanted = [(SCORE_OUTPUT, 1), (EMBEDDING_OUTPUT, 2)]
    has_map = ANOMALY_MAP_OUTPUT in outputs or meta.kind == "patch"
    for name, rank in wanted + ([(ANOMALY_MAP_OUTPUT, 3)] if has_map else []):
        if name not in outputs:
            raise ModelLoadError(f"the graph has no output {name!r}")
        if len(outputs[name].shape) != rank:
            raise ModelLoadError(
                f"output {name!r} has shape {outputs[name].shape}, not rank {rank}"
            )
    dim = outputs[EMBEDDING_OUTPUT].shape[1]
    if isinstance(dim, int) and dim != meta.rep_dim:
        raise ModelLoadError(
            f"output {EMBEDDING_OUTPUT!r} has {dim} dimensions, the metadata centre {meta.rep_dim}"
        )
    return has_map


def warm_up(
    session: ort.InferenceSession, meta: ModelMetadata, has_map: bool
) -> tuple[int, int] | None:
    """One inference on a blank image: it must run and give a finite score (and a finite
    `[1, h, w]` map when the graph has one). Returns the map's `(h, w)`, None without a map."""
    spec = meta.input
    blank = np.zeros((1, spec.channels, spec.height, spec.width), dtype=np.float32)
    names = [SCORE_OUTPUT, EMBEDDING_OUTPUT] + ([ANOMALY_MAP_OUTPUT] if has_map else [])
    try:
        score, embedding, *grid = session.run(names, {INPUT_NAME: blank})
    except Exception as exc:
        raise ModelLoadError(f"warm-up inference failed: {exc}") from exc
    if np.shape(score) != (1,) or not np.isfinite(score).all():
        raise ModelLoadError(f"warm-up inference gave the score {score!r}, not one finite value")
    if meta.kind == "image":
        _check_distance(meta, float(score[0]), np.asarray(embedding[0]))
    if not grid:
        return None
    shape = np.shape(grid[0])
    if len(shape) != 3 or shape[0] != 1 or min(shape[1:]) < 1 or not np.isfinite(grid[0]).all():
        raise ModelLoadError(
            f"warm-up inference gave an {ANOMALY_MAP_OUTPUT!r} of shape {shape}, not a finite "
            "[1, h, w] grid"
        )
    grid = int(shape[1]), int(shape[2])
    if meta.patch is not None and list(grid) != meta.patch.grid:
        raise ModelLoadError(
            f"output {ANOMALY_MAP_OUTPUT!r} is a {grid[0]}x{grid[1]} grid, the metadata's "
            f"patch grid {meta.patch.grid[0]}x{meta.patch.grid[1]}"
        )
    return grid


def _check_distance(meta: ModelMetadata, score: float, embedding: np.ndarray) -> None:
    """A whole-image model's score should be the embedding's squared distance to the centre."""
    distance = float(np.sum((embedding - np.asarray(meta.center)) ** 2))
    if not np.isclose(distance, score, rtol=1e-3, atol=1e-5):
        log.warning(
            "model %s v%d: score %.6g is not the squared distance %.6g to the metadata centre",
            meta.name,
            meta.version,
            score,
            distance,
        )
