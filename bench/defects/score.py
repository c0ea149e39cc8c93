"""Scores a defects dataset's test images with a model file in ONNX Runtime: image scores,
and maps (the graph's `anomaly_map` where it has one, occlusion maps otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.defects.metrics import Cells
from bench.defects.surfaces import CROP, read_mask
from modelfile import ANOMALY_MAP_OUTPUT, INPUT_NAME, SCORE_OUTPUT
from modelfile.metadata import METADATA_KEY, ModelMetadata
from modelfile.pixels import to_input
from service.explain import PATCHES, Grid, explain_batch
from training.data.images import read_image

CHUNK = 64  # images (or occluded copies) per inference


@dataclass(frozen=True)
class Scored:
    """One test class: its files, image scores, maps (h, w grids of cells placed by
    `cells`) and masks (image size)."""

    kind: str
    names: list[str]
    scores: np.ndarray
    maps: list[np.ndarray]
    cells: Cells
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


def metadata(sess: ort.InferenceSession) -> ModelMetadata:
    return ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY))


def run_scores(sess: ort.InferenceSession, batch: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """`score` of float32 (N, C, H, W), in runs of `chunk` images."""
    parts = [
        sess.run([SCORE_OUTPUT], {INPUT_NAME: batch[s : s + chunk]})[0]
        for s in range(0, len(batch), chunk)
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
    """Scores and occlusion grids (service/explain.py, 1 + 169 inferences an image): each
    cell the score drop, clipped at 0, when its patch is filled with the image's mean."""
    scores, grids = [], []
    for image in batch:
        stacked, _ = explain_batch(image[None])
        all_scores = run_scores(sess, stacked)
        scores.append(all_scores[:1])
        side = int(np.sqrt(PATCHES))
        grids.append(np.clip(all_scores[0] - all_scores[1:], 0.0, None).reshape(1, side, side))
    return np.concatenate(scores), np.concatenate(grids)


def map_cells(sess: ort.InferenceSession, size: int) -> Cells:
    """Where the map's cells lie: the patch model's strided patches (from its metadata), or
    the occlusion patches of a `size`-px image."""
    if has_map(sess):
        meta = metadata(sess)
        if meta.patch is None:
            raise ValueError("a model with an anomaly_map output has no patch metadata")
        patch = meta.patch
        return Cells.strided((patch.grid[0], patch.grid[1]), patch.size, patch.stride)
    grid = Grid.of(size, size)
    return Cells(grid.rows, grid.cols, grid.patch_h, grid.patch_w)


def score_kind(sess: ort.InferenceSession, root: Path, kind: str, with_maps: bool = True) -> Scored:
    """Scores test/<kind>: maps from the graph, or by occlusion (when `with_maps`)."""
    paths = sorted((root / "test" / kind).iterdir())
    size = input_size(sess)
    if size != CROP:
        raise ValueError(f"the model reads {size}-px images; the maps need it to read {CROP} px")
    batch = to_input(np.stack([read_image(p, "L", size) for p in paths]))
    if has_map(sess):
        scores, maps = graph_maps(sess, batch)
    elif with_maps:
        scores, maps = occlusion_maps(sess, batch)
    else:
        scores, maps = run_scores(sess, batch), np.empty((len(batch), 0, 0))
    names = [p.name for p in paths]
    masks = [read_mask(root, kind, name) for name in names]
    return Scored(kind, names, scores, list(maps), map_cells(sess, size), masks)
