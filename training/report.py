"""Report figures of a trained detector on its test set: extremes, ROC curve, score histograms.

Figures are drawn on matplotlib's Agg canvas (no display, no pyplot state) and written as
PNG atomically: to a temporary file in the target folder, then renamed over the target.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import roc_auc_score, roc_curve

from modelfile.metadata import NAME_PATTERN

# Scores spanning more than this ratio (max / min, all positive) get a log-scaled x axis.
LOG_SCALE_RATIO = 100.0
HISTOGRAM_BINS = 50
TILE_PAD = 2  # pixels of background between tiles of an extremes grid
DPI = 100
FILE_MODE = 0o644  # figures are for sharing: readable by all, like any file the user writes


def extreme_indices(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(most normal, most anomalous): indices of the n lowest scores, lowest first, and of the
    n highest, highest first. n is capped at len(scores); ties keep the original order."""
    _check_scores(scores)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    order = np.argsort(scores, kind="stable")
    k = min(n, len(order))
    return order[:k], order[::-1][:k]


def plot_extremes(
    images: np.ndarray,
    scores: np.ndarray,
    path: Path,
    *,
    n: int = 32,
    title: str = "",
    labels: np.ndarray | None = None,
) -> Path:
    """The n most normal and n most anomalous images side by side, as in the paper's Figure 2.

    images: uint8 (N, H, W, C) with C in {1, 3}; scores (N,), higher = more anomalous;
    labels (N,), 1 = truly anomalous: those tiles get a red frame.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(
            f"images must be uint8 (N, H, W, C) with C in {{1, 3}}, got {images.dtype} "
            f"{images.shape}"
        )
    if len(images) != len(scores):
        raise ValueError(f"images has {len(images)} entries but scores has {len(scores)}")
    if labels is not None:
        _check_labels(labels, len(scores), need_both=False)
        title = f"{title} (red frame: truly anomalous)".strip()
    normal, anomalous = extreme_indices(scores, n)
    fig = _figure(10, 5.6)
    for ax, idx, label in zip(
        fig.subplots(1, 2), (normal, anomalous), ("most normal", "most anomalous"), strict=True
    ):
        grid = _mosaic(images[idx])
        if grid.shape[2] == 1:
            ax.imshow(grid[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(grid)
        ax.set_title(f"{label} (scores {scores[idx].min():.4g} .. {scores[idx].max():.4g})")
        ax.set_axis_off()
        if labels is not None:
            _frame_anomalies(ax, labels[idx], images.shape[1], images.shape[2], len(idx))
    return _save(fig, path, title)


def plot_roc(scores: np.ndarray, labels: np.ndarray, path: Path, *, title: str = "") -> Path:
    """ROC curve with anomalies (label 1) as the positive class; the AUC in the legend."""
    _check_scores(scores)
    _check_labels(labels, len(scores), need_both=True)
    fpr, tpr, _ = roc_curve(labels, scores)
    auc = roc_auc_score(labels, scores)
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    ax.plot(fpr, tpr, label=f"AUC = {auc:.4f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return _save(fig, path, title)


def plot_score_histograms(
    scores: np.ndarray,
    labels: np.ndarray,
    thresholds: Mapping[str, float],
    path: Path,
    *,
    title: str = "",
) -> Path:
    """Histograms of normal and anomalous scores (each as fractions of its class), thresholds as
    named vertical lines; the x axis is log-scaled when positive scores span orders of magnitude."""
    _check_scores(scores)
    _check_labels(labels, len(scores), need_both=False)
    lo, hi = float(scores.min()), float(scores.max())
    # A log axis cannot show a non-positive threshold, so any such one keeps the axis linear.
    positive = lo > 0 and all(value > 0 for value in thresholds.values())
    log_x = positive and hi / lo > LOG_SCALE_RATIO
    if log_x:
        bins = np.geomspace(lo, hi, HISTOGRAM_BINS + 1)
    else:
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, HISTOGRAM_BINS + 1)
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    for value, name, colour in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
        part = scores[labels == value]
        if len(part):
            weights = np.full(len(part), 1.0 / len(part))
            ax.hist(part, bins=bins.tolist(), weights=weights, alpha=0.5, color=colour, label=name)
    _draw_thresholds(ax, thresholds)
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel="anomaly score", ylabel="fraction of class")
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path, title)


def write_report(
    images: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    thresholds: Mapping[str, float],
    out_dir: Path,
    *,
    name: str,
) -> dict[str, Path]:
    """All three figures in out_dir as <name>-extremes.png, <name>-roc.png, <name>-scores.png.

    Returns their paths under the keys "extremes", "roc" and "scores"."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"report name {name!r} must match {NAME_PATTERN}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "extremes": plot_extremes(
            images, scores, out_dir / f"{name}-extremes.png", title=name, labels=labels
        ),
        "roc": plot_roc(scores, labels, out_dir / f"{name}-roc.png", title=name),
        "scores": plot_score_histograms(
            scores, labels, thresholds, out_dir / f"{name}-scores.png", title=name
        ),
    }


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (inches), independent of pyplot and its default backend."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)  # the canvas attaches itself to fig
    return fig


def _mosaic(images: np.ndarray) -> np.ndarray:
    """(k, H, W, C) -> one (rows*(H+pad)-pad, cols*(W+pad)-pad, C) grid, about square, white
    between tiles and in unused cells."""
    k, h, w, c = images.shape
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    grid = np.full(
        (rows * (h + TILE_PAD) - TILE_PAD, cols * (w + TILE_PAD) - TILE_PAD, c), 255, np.uint8
    )
    for i, image in enumerate(images):
        top, left = (i // cols) * (h + TILE_PAD), (i % cols) * (w + TILE_PAD)
        grid[top : top + h, left : left + w] = image
    return grid


def _frame_anomalies(ax: Axes, labels: np.ndarray, h: int, w: int, k: int) -> None:
    """Red frames around the mosaic tiles (laid out as `_mosaic` does) whose label is 1."""
    cols = math.ceil(math.sqrt(k))
    for i in np.flatnonzero(labels == 1).tolist():
        top, left = (i // cols) * (h + TILE_PAD), (i % cols) * (w + TILE_PAD)
        ax.add_patch(
            Rectangle((left - 1, top - 1), w + 1, h + 1, fill=False, edgecolor="red", linewidth=1.5)
        )


def _draw_thresholds(ax: Axes, thresholds: Mapping[str, float]) -> None:
    styles = ("--", "-.", ":", (0, (5, 1)))
    for i, (name, value) in enumerate(thresholds.items()):
        ax.axvline(
            value,
            color=f"C{(i + 2) % 10}",
            linestyle=styles[i % len(styles)],
            label=f"{name} = {value:.4g}",
        )


def _check_scores(scores: np.ndarray) -> None:
    if scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contains NaN or infinite values")


def _check_labels(labels: np.ndarray, n: int, *, need_both: bool) -> None:
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) like scores, got {labels.shape}")
    present = set(np.unique(labels).tolist())
    if not present <= {0, 1} or (need_both and present != {0, 1}):
        wanted = "both 0 (normal) and 1 (anomalous)" if need_both else "only 0 and 1"
        raise ValueError(f"labels must contain {wanted}, got values {sorted(present)}")


def _save(fig: Figure, path: Path, title: str) -> Path:
    """Writes fig as PNG to a temporary file beside path, then renames it over path."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.chmod(tmp, FILE_MODE)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
