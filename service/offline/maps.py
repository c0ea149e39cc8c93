"""Anomaly maps of image files without the server, the ones `POST /score?explain=true` draws:
the graph's own map for a patch model (from the scoring run), occlusion for the others."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from modelfile import ANOMALY_MAP_OUTPUT
from service.explain import PATCHES, explain_batch, grid_overlay, maps_from_scores, overlay
from service.repository import LoadedModel

SUFFIX = ".map.png"


def scored_maps(
    model: LoadedModel, images: np.ndarray, batch_size: int
) -> tuple[np.ndarray, list[bytes]]:
    """float64 scores of float32 `(n, C, H, W)` images and one overlay PNG each."""
    if model.map_shape is not None:
        scores, outputs = model.run_outputs(images, (ANOMALY_MAP_OUTPUT,))
        cells = zip(images, outputs[ANOMALY_MAP_OUTPUT], strict=True)
        patch = model.metadata.patch
        return scores, [grid_overlay(image, grid, patch) for image, grid in cells]
    base: list[float] = []
    pngs: list[bytes] = []
    for image in images:  # occlusion: 1 + PATCHES copies an image, run `batch_size` at a time
        batch, grid = explain_batch(image[None])
        ran = np.concatenate(
            [model.run(batch[s : s + batch_size]) for s in range(0, 1 + PATCHES, batch_size)]
        )
        base.append(float(ran[0]))
        pngs.append(overlay(image, maps_from_scores(ran[:1], ran[1:], grid)[0]))
    return np.array(base, dtype=np.float64), pngs


def map_names(files: list[Path]) -> list[str]:
    """A file name per input for its map, `<name><SUFFIX>`, with `-2`, `-3`... added to the
    later inputs of one name (same names in other folders), so that no two collide."""
    seen: Counter[str] = Counter()
    names = []
    taken = {f"{path.name}{SUFFIX}" for path in files}
    for path in files:
        seen[path.name] += 1
        name = f"{path.name}{SUFFIX}"
        count = seen[path.name]
        while count > 1 and name in taken:
            name = f"{path.name}-{count}{SUFFIX}"
            count += 1
        taken.add(name)
        names.append(name)
    return names
