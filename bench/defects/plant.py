"""Defects planted into grey crops, each with its mask: a thin bright scratch, a faint line, a
soft stain and a small dark hole, at seeded positions and contrasts.

Every defect is an opacity map `alpha` in [0, 1] (anti-aliased shapes) applied to the crop;
its mask is `alpha >= 0.5`, so that the mask is where the change is at least half its peak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

KINDS = ("scratch", "faint_line", "stain", "hole")
MARGIN = 10  # px kept between a defect's centre and the crop's border


@dataclass(frozen=True)
class Planted:
    """A crop with its defect: the new pixels (uint8), the mask, and what was drawn."""

    image: np.ndarray
    mask: np.ndarray
    params: dict[str, float | str]


def _segment_alpha(
    shape: tuple[int, int], start: np.ndarray, end: np.ndarray, width: float
) -> np.ndarray:
    """Anti-aliased opacity of a segment `width` px wide: 1 inside, a 1-px ramp at the edge."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    d = end - start
    t = np.clip(((yy - start[0]) * d[0] + (xx - start[1]) * d[1]) / float(d @ d), 0.0, 1.0)
    dist = np.hypot(yy - (start[0] + t * d[0]), xx - (start[1] + t * d[1]))
    return np.clip(width / 2.0 + 0.5 - dist, 0.0, 1.0)


def _disk_alpha(shape: tuple[int, int], centre: np.ndarray, ry: float, rx: float) -> np.ndarray:
    """Anti-aliased opacity of an ellipse with radii `ry`, `rx` (a sharp, 1-px edge)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    r = np.hypot((yy - centre[0]) / ry, (xx - centre[1]) / rx)
    return np.clip((1.0 - r) * min(ry, rx) + 0.5, 0.0, 1.0)


def _centre(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return np.array(
        [rng.uniform(MARGIN, shape[0] - MARGIN), rng.uniform(MARGIN, shape[1] - MARGIN)]
    )


def _line(
    rng: np.random.Generator, shape: tuple[int, int], length: tuple[float, float], width: float
) -> tuple[np.ndarray, dict[str, float | str]]:
    """A straight segment through a random centre, at a random angle, clipped to the crop."""
    centre, angle = _centre(rng, shape), rng.uniform(0.0, np.pi)
    half = rng.uniform(*length) / 2.0
    step = half * np.array([np.sin(angle), np.cos(angle)])
    limit = np.array(shape, dtype=np.float64) - 1.0
    start, end = np.clip(centre - step, 0.0, limit), np.clip(centre + step, 0.0, limit)
    params: dict[str, float | str] = {
        "y": float(centre[0]),
        "x": float(centre[1]),
        "angle_deg": float(np.degrees(angle)),
        "length": float(2 * half),
        "width": width,
    }
    return _segment_alpha(shape, start, end, width), params


def scratch(rng: np.random.Generator, crop: np.ndarray) -> Planted:
    """A thin bright scratch: 1-2 px wide, 20-50 px long, +90 to +160 grey levels."""
    alpha, params = _line(rng, crop.shape, (20.0, 50.0), float(rng.choice([1.0, 1.5, 2.0])))
    delta = rng.uniform(90.0, 160.0)
    return _apply(crop, alpha, crop + delta, params | {"delta": float(delta)})


def faint_line(rng: np.random.Generator, crop: np.ndarray) -> Planted:
    """A low-contrast line: 1-2 px wide, 40-90 px long, 20-35 grey levels lighter or darker."""
    alpha, params = _line(rng, crop.shape, (40.0, 90.0), float(rng.choice([1.0, 2.0])))
    delta = rng.choice([-1.0, 1.0]) * rng.uniform(20.0, 35.0)
    return _apply(crop, alpha, crop + delta, params | {"delta": float(delta)})


def stain(rng: np.random.Generator, crop: np.ndarray) -> Planted:
    """A soft stain: a blob about 15 px across, blurred, 50-70 grey levels lighter or darker."""
    centre, diameter = _centre(rng, crop.shape), rng.uniform(12.0, 18.0)
    squash = rng.uniform(0.7, 1.0)
    disk = _disk_alpha(crop.shape, centre, diameter / 2.0, squash * diameter / 2.0)
    alpha = gaussian_filter(disk, sigma=2.5)
    alpha /= alpha.max()
    delta = rng.choice([-1.0, 1.0]) * rng.uniform(50.0, 70.0)
    params: dict[str, float | str] = {
        "y": float(centre[0]),
        "x": float(centre[1]),
        "diameter": float(diameter),
        "delta": float(delta),
    }
    return _apply(crop, alpha, crop + delta, params)


def hole(rng: np.random.Generator, crop: np.ndarray) -> Planted:
    """A small hole: a sharp dark ellipse, 5-11 px across, at grey level 0-30."""
    centre = _centre(rng, crop.shape)
    ry, rx = rng.uniform(2.5, 5.5), rng.uniform(2.5, 5.5)
    level = rng.uniform(0.0, 30.0)
    params: dict[str, float | str] = {
        "y": float(centre[0]),
        "x": float(centre[1]),
        "ry": float(ry),
        "rx": float(rx),
        "level": float(level),
    }
    return _apply(crop, _disk_alpha(crop.shape, centre, ry, rx), np.full_like(crop, level), params)


def _apply(
    crop: np.ndarray, alpha: np.ndarray, target: np.ndarray, params: dict[str, float | str]
) -> Planted:
    """Blends `target` into the crop by `alpha`; the mask is where alpha is at least 0.5."""
    image = crop * (1.0 - alpha) + target * alpha
    return Planted(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        mask=alpha >= 0.5,
        params=params,
    )


PLANTERS: dict[str, Callable[[np.random.Generator, np.ndarray], Planted]] = {
    "scratch": scratch,
    "faint_line": faint_line,
    "stain": stain,
    "hole": hole,
}


def plant(kind: str, rng: np.random.Generator, crop: np.ndarray) -> Planted:
    """Plants one defect of `kind` into a uint8 grey crop (H, W)."""
    if kind not in PLANTERS:
        raise ValueError(f"unknown defect kind {kind!r}; known: {', '.join(KINDS)}")
    return PLANTERS[kind](rng, crop.astype(np.float64))
