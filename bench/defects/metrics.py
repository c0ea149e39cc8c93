"""Detection and localisation metrics of the defects benchmark: image AUROC, pixel AUROC, PRO
up to a false-positive rate of 0.3, and whether a map's hottest cell lies on the defect.

A map is an (h, w) grid of scores, one per cell, higher = more anomalous; `Cells` says where
each cell (a patch of the image) lies. `to_pixels` gives each pixel the mean score of the cells
that cover it (as Patch SVDD and the service's occlusion maps do); pixel AUROC and PRO use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import label
from sklearn.metrics import roc_auc_score

PRO_MAX_FPR = 0.3
PRO_STEPS = 100


def image_auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """AUROC of image scores: anomalies should score higher than normal images."""
    truth = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(truth, np.r_[normal, anomalous]))


@dataclass(frozen=True)
class Cells:
    """The image boxes of a map's cells: top-left corners along each axis, and the box size."""

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    height: int
    width: int

    @classmethod
    def strided(cls, grid: tuple[int, int], size: int, stride: int) -> Cells:
        """`size`-px patches every `stride` px (a patch model's grid)."""
        rows = tuple(i * stride for i in range(grid[0]))
        return cls(rows, tuple(j * stride for j in range(grid[1])), size, size)

    @classmethod
    def pixels(cls, height: int, width: int) -> Cells:
        """One cell per pixel (a map already at the image's size)."""
        return cls(tuple(range(height)), tuple(range(width)), 1, 1)

    def box(self, i: int, j: int) -> tuple[slice, slice]:
        top, left = self.rows[i], self.cols[j]
        return slice(top, top + self.height), slice(left, left + self.width)


def to_pixels(grid: np.ndarray, cells: Cells, height: int, width: int) -> np.ndarray:
    """float64 (height, width): each pixel the mean of the cells over it; a pixel no cell
    covers (an edge the stride leaves out) takes the nearest covered row's or column's value."""
    g = np.asarray(grid, dtype=np.float64)
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            box = cells.box(i, j)
            total[box] += g[i, j]
            count[box] += 1.0
    rows, cols = np.flatnonzero(count.any(axis=1)), np.flatnonzero(count.any(axis=0))
    near_r = rows[np.abs(np.arange(height)[:, None] - rows[None]).argmin(axis=1)]
    near_c = cols[np.abs(np.arange(width)[:, None] - cols[None]).argmin(axis=1)]
    return (total / np.maximum(count, 1.0))[np.ix_(near_r, near_c)]


def pixel_auroc(maps: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """AUROC of every pixel of every image (good ones too), map value against mask."""
    values = np.concatenate([m.ravel() for m in maps])
    truth = np.concatenate([m.ravel() for m in masks])
    return float(roc_auc_score(truth, values))


def pro(maps: list[np.ndarray], masks: list[np.ndarray], max_fpr: float = PRO_MAX_FPR) -> float:
    """Per-region overlap, integrated over false-positive rates 0..max_fpr and divided by
    max_fpr (1.0 is perfect): each connected defect region counts alike, whatever its size."""
    normal = np.concatenate([m[~k] for m, k in zip(maps, masks, strict=True)])
    regions = [
        m[labels == r]
        for m, k in zip(maps, masks, strict=True)
        for labels, n in [label(k)]
        for r in range(1, n + 1)
    ]
    if not regions:
        raise ValueError("pro: no defect region in the masks")
    thresholds = np.quantile(normal, 1.0 - np.linspace(0.0, max_fpr, PRO_STEPS + 1))
    fprs = np.array([np.mean(normal > t) for t in thresholds])
    overlaps = np.array([np.mean([np.mean(r > t) for r in regions]) for t in thresholds])
    order = np.argsort(fprs, kind="stable")
    fprs, overlaps = fprs[order], overlaps[order]
    at_max = np.interp(max_fpr, fprs, overlaps)
    keep = fprs < max_fpr
    fprs, overlaps = np.r_[fprs[keep], max_fpr], np.r_[overlaps[keep], at_max]
    return float(np.trapezoid(overlaps, fprs) / max_fpr)


def hottest_on_defect(grid: np.ndarray, cells: Cells, mask: np.ndarray) -> bool:
    """Whether the box of the grid's hottest cell touches the mask. Tied maxima count as one
    cell at their centroid; a flat map is a miss."""
    g = np.asarray(grid, dtype=np.float64)
    if g.max() == g.min():
        return False
    hot = np.argwhere(g == g.max()).mean(axis=0).round().astype(int)
    return bool(mask[cells.box(int(hot[0]), int(hot[1]))].any())
