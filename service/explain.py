"""Anomaly maps: the graph's own `anomaly_map` for patch models, occlusion for the others.

A patch model's graph gives its per-patch scores on a grid in the same inference as the
score; the grid is drawn over the image, each cell over the pixels its patch is centred on.

Occlusion, where greying out a patch lowers the score, the anomaly is: for each image, a 13 x
13 grid of patches (1/7 of the side, stride about 1/14) is filled with the image's mean; the
patch's value is the score it removes, `score(x) - score(x occluded)`, clipped at 0, and each
pixel gets the mean value of the patches over it. It needs nothing but the model's own
`score` output, so it works unchanged for every model file (and for Triton, which serves the
same file); the cost is `1 + PATCHES` inferences an image.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from modelfile.metadata import PatchInfo

GRID = 13  # patch positions along each side
PATCHES = GRID * GRID
COST = 1 + PATCHES  # inferences for one image with its map
OVERLAY_SIDE = 224  # the overlay PNG is scaled up (nearest) to about this many pixels


@dataclass(frozen=True)
class Grid:
    """Patch size and top-left corners of the occlusion patches for an `H x W` image."""

    height: int
    width: int
    patch_h: int
    patch_w: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def of(cls, height: int, width: int) -> Grid:
        patch_h, patch_w = max(1, -(-height // 7)), max(1, -(-width // 7))
        rows = np.linspace(0, height - patch_h, GRID).round().astype(int)
        cols = np.linspace(0, width - patch_w, GRID).round().astype(int)
        return cls(height, width, patch_h, patch_w, tuple(rows.tolist()), tuple(cols.tolist()))

    def boxes(self) -> list[tuple[int, int]]:
        """Top-left corners, row-major: the order of the occluded copies."""
        return [(r, c) for r in self.rows for c in self.cols]


def occluded(images: np.ndarray, grid: Grid) -> np.ndarray:
    """float32 `(n * PATCHES, C, H, W)`: each image with each patch set to its channel means."""
    n = images.shape[0]
    means = images.mean(axis=(2, 3), keepdims=True)  # (n, C, 1, 1)
    out = np.repeat(images[:, None], PATCHES, axis=1)  # (n, P, C, H, W)
    for k, (r, c) in enumerate(grid.boxes()):
        out[:, k, :, r : r + grid.patch_h, c : c + grid.patch_w] = means
    return out.reshape(n * PATCHES, *images.shape[1:])


def maps_from_scores(base: np.ndarray, patch_scores: np.ndarray, grid: Grid) -> np.ndarray:
    """float32 `(n, H, W)`: per pixel, the mean score drop of the patches that cover it."""
    n = base.shape[0]
    drops = np.clip(base[:, None] - patch_scores.reshape(n, PATCHES), 0.0, None)
    total = np.zeros((n, grid.height, grid.width), dtype=np.float64)
    covered = np.zeros((grid.height, grid.width), dtype=np.float64)
    for k, (r, c) in enumerate(grid.boxes()):
        total[:, r : r + grid.patch_h, c : c + grid.patch_w] += drops[:, k, None, None]
        covered[r : r + grid.patch_h, c : c + grid.patch_w] += 1.0
    return (total / np.maximum(covered, 1.0)).astype(np.float32)


def _heat(values: np.ndarray) -> np.ndarray:
    """uint8 `(..., 3)` colours for values in [0, 1]: black, red, yellow, white."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    stops = np.array([[0, 0, 0], [220, 30, 30], [255, 220, 0], [255, 255, 255]], np.float64)
    pos = v * (len(stops) - 1)
    low = np.floor(pos).clip(0, len(stops) - 2).astype(int)
    frac = pos - low
    colour = stops[low[..., 0]] * (1 - frac) + stops[low[..., 0] + 1] * frac
    return colour.astype(np.uint8)


# A map is drawn in 256 levels, from none (0) to its peak (255): each level's heat colour
# and opacity, looked up per pixel (computing them per pixel cost more than the PNG).
_LEVELS = np.arange(256) / 255.0
_COLOUR = _heat(_LEVELS).astype(np.float32)  # (256, 3)
_ALPHA = (0.65 * _LEVELS).astype(np.float32)[:, None]  # (256, 1)


def _levels(values: np.ndarray, floor: float) -> np.ndarray:
    """uint8 levels of `values`: 0 at `floor` and below, 255 at their peak."""
    span = float(values.max()) - floor
    if not span > 0:
        return np.zeros(values.shape, np.uint8)
    scaled = (values.astype(np.float32) - np.float32(floor)) * np.float32(255.0 / span)
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def _draw(image: np.ndarray, levels: np.ndarray) -> bytes:
    """PNG of the `(H, W)` uint8 levels over the image (float32 `(C, H, W)` pixel/255)."""
    base = (image * np.float32(255.0)).transpose(1, 2, 0)  # (H, W, C): grey spreads to RGB
    blended = base + (_COLOUR[levels] - base) * _ALPHA[levels]
    picture = Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    scale = max(1, OVERLAY_SIDE // max(picture.size))
    picture = picture.resize(
        (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
    )
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False, compress_level=3)
    return out.getvalue()


def overlay(image: np.ndarray, values: np.ndarray, floor: float = 0.0) -> bytes:
    """PNG of the `(H, W)` map over the image (float32 `(C, H, W)` pixel/255), scaled up;
    the colours run from `floor` (none) to the map's peak (white)."""
    return _draw(image, _levels(values, floor))


def anomaly_map(image: np.ndarray, values: np.ndarray) -> dict[str, object]:
    """The `anomaly_map` object of one result, from an occlusion map at the image's size."""
    height, width = values.shape
    return {
        "width": width,
        "height": height,
        "values": values.ravel().tolist(),
        "png": base64.b64encode(overlay(image, values)).decode("ascii"),
    }


def cell_index(length: int, cells: int, patch: PatchInfo | None) -> np.ndarray:
    """For each pixel along an axis of `length`, the grid cell drawn over it. With the model's
    patch geometry (`size`-px patches every `stride` px, fitting `cells`), the cell whose
    stride-wide band at its patch's centre holds the pixel, the edge cells reaching out to the
    borders; without it, an equal share of the axis each."""
    pixels = np.arange(length)
    if patch is not None and (length - patch.size) // patch.stride + 1 == cells:
        margin = (patch.size - patch.stride) / 2
        return np.clip((pixels - margin) // patch.stride, 0, cells - 1).astype(int)
    return pixels * cells // length


def grid_overlay(image: np.ndarray, cells: np.ndarray, patch: PatchInfo | None = None) -> bytes:
    """PNG of a graph's `(h, w)` map over the image, each cell over the pixels its patch is
    centred on (`cell_index`), its lowest cell uncoloured."""
    levels = _levels(cells, float(cells.min()))
    rows = cell_index(image.shape[1], cells.shape[0], patch)
    cols = cell_index(image.shape[2], cells.shape[1], patch)
    return _draw(image, levels[np.ix_(rows, cols)])


def grid_maps(
    images: np.ndarray, cells: np.ndarray, patch: PatchInfo | None = None
) -> list[dict[str, object]]:
    """The `anomaly_map` objects of the images from the graph's `(n, h, w)` output."""
    height, width = cells.shape[1:]
    return [
        {
            "width": width,
            "height": height,
            "values": grid.ravel().tolist(),
            "png": base64.b64encode(grid_overlay(image, grid, patch)).decode("ascii"),
        }
        for image, grid in zip(images, cells, strict=True)
    ]


def explain_batch(images: np.ndarray) -> tuple[np.ndarray, Grid]:
    """The images followed by their occluded copies: one array to score in one go."""
    grid = Grid.of(images.shape[2], images.shape[3])
    return np.concatenate([images, occluded(images, grid)]), grid


def explain_answers(
    images: np.ndarray, scores: np.ndarray, grid: Grid
) -> tuple[np.ndarray, list[dict[str, object]]]:
    """Splits the scores of `explain_batch` into the images' own scores and their maps."""
    n = images.shape[0]
    base, rest = scores[:n], scores[n:]
    maps = maps_from_scores(base, rest, grid)
    return base, [anomaly_map(images[i], maps[i]) for i in range(n)]
