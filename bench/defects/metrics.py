"""Detection and localisation metrics of the defects benchmark: image AUROC, pixel AUROC, PRO
up to a false-positive rate of 0.3, and whether a map's hottest cell lies on the defect.

Maps are (h, w) grids of scores over the whole image, higher = more anomalous. `upsample`
brings a grid to the image's pixels bilinearly from the cells' centres (a map already at the
image's size is unchanged); pixel AUROC and PRO use the upsampled maps.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import label
from sklearn.metrics import roc_auc_score

PRO_MAX_FPR = 0.3
PRO_STEPS = 100


def image_auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """AUROC of image scores: anomalies should score higher than normal images."""
    truth = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(truth, np.r_[normal, anomalous]))


def _axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear weights along one axis: output pixel centres mapped onto input cell centres."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1.0)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, pos - low


def upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """float64 (height, width): the (h, w) grid interpolated bilinearly between cell centres,
    constant beyond the outer centres."""
    g = np.asarray(grid, dtype=np.float64)
    if g.shape == (height, width):
        return g
    y0, y1, fy = _axis(height, g.shape[0])
    x0, x1, fx = _axis(width, g.shape[1])
    rows = g[y0] * (1 - fy)[:, None] + g[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


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


def hottest_on_defect(grid: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the grid's hottest cell covers a pixel of the mask. Cells partition the image
    evenly; tied maxima count as one cell at their centroid; a flat map is a miss."""
    g = np.asarray(grid, dtype=np.float64)
    if g.max() == g.min():
        return False
    hot = np.argwhere(g == g.max()).mean(axis=0).round().astype(int)
    (h, w), (height, width) = g.shape, mask.shape
    top, bottom = hot[0] * height // h, -(-(hot[0] + 1) * height // h)
    left, right = hot[1] * width // w, -(-(hot[1] + 1) * width // w)
    return bool(mask[top:bottom, left:right].any())
