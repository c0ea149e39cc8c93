"""Folder datasets made of crops of real photographs (scikit-image's wheel ships them), with
defects planted into test crops: the layout `deepsvdd train --dataset folder` reads.

<root>/train/good: crops of the photograph's top rows; <root>/test/good and test/<kind>: crops
of its bottom rows (never trained on), defects planted; test/other: crops of another
surface; <root>/masks/<kind>/<same name>.png: each defect's mask; <root>/plant.json: what
was planted where.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.defects.plant import KINDS, plant

REPORT_SURFACES = ("brick", "grass", "gravel")  # reported on; nobody tunes on them
# Tuned on, never reported as results: scikit-image's moon, camera and ihc (tissue), and a
# stationary texture from Debian's lomiri-wallpapers (the Makefile installs it).
TUNING_SURFACES = ("moon", "camera", "ihc", "pattern")
OTHER = {
    "brick": "grass",
    "grass": "gravel",
    "gravel": "brick",
    "moon": "camera",
    "camera": "moon",
    "ihc": "moon",
    "pattern": "ihc",
}
WALLPAPERS = {"pattern": Path("/usr/share/backgrounds/analogpattern_by_Peter_Nerlich.jpg")}
SIDE = 512
CROP = 128
TRAIN_ROWS = (0, 256)  # the photograph's rows that train crops come from
TEST_ROWS = (288, 512)  # rows of the test crops: 32 rows away from any training pixel


@dataclass(frozen=True)
class Counts:
    """How many crops of each split: train/good, test/good, each defect kind, test/other."""

    train: int = 300
    good: int = 40
    per_kind: int = 20
    other: int = 20


def photograph(surface: str) -> np.ndarray:
    """uint8 (512, 512) grey photograph `surface`: from skimage/data, or a Debian wallpaper
    scaled to 512 rows and cut to its middle 512 columns."""
    if surface not in OTHER:
        raise ValueError(f"unknown surface {surface!r}; known: {', '.join(OTHER)}")
    if surface in WALLPAPERS:
        return _wallpaper(WALLPAPERS[surface])
    resource = importlib.resources.files("skimage") / "data" / f"{surface}.png"
    with importlib.resources.as_file(resource) as path, Image.open(path) as image:
        return np.asarray(image.convert("L"))


def _wallpaper(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: apt-get install lomiri-wallpapers-16.04")
    with Image.open(path) as image:
        grey = image.convert("L")
        width = round(grey.width * SIDE / grey.height)
        scaled = np.asarray(grey.resize((width, SIDE), Image.Resampling.LANCZOS))
    left = (width - SIDE) // 2
    return np.ascontiguousarray(scaled[:, left : left + SIDE])


def crops(
    photo: np.ndarray, rows: tuple[int, int], count: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` CROP x CROP crops whose pixels lie within `rows`: a regular grid of top-left
    corners over the region, each moved by a small random offset (up to 8 px)."""
    top_max, left_max = rows[1] - CROP, photo.shape[1] - CROP
    if top_max < rows[0] or left_max < 0:
        raise ValueError(f"rows {rows} of a {photo.shape} photograph cannot hold a {CROP}-px crop")
    side = int(np.ceil(np.sqrt(count)))
    tops = np.linspace(rows[0], top_max, side)
    lefts = np.linspace(0, left_max, side)
    corners = np.array([(t, left) for t in tops for left in lefts])[rng.permutation(side * side)]
    corners = corners[:count] + rng.uniform(-8.0, 8.0, size=(count, 2))
    corners[:, 0] = np.clip(corners[:, 0], rows[0], top_max)
    corners[:, 1] = np.clip(corners[:, 1], 0, left_max)
    out = [photo[t : t + CROP, left : left + CROP] for t, left in corners.round().astype(int)]
    return np.stack(out)


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path)


def build(root: Path, surface: str, seed: int, counts: Counts | None = None) -> Path:
    """Writes the dataset of `surface` and `seed` under `root` (skipped when its plant.json
    is there: a finished build) and returns `root`."""
    counts = counts or Counts()
    if (root / "plant.json").exists():
        return root
    rng = np.random.default_rng([seed, sorted(OTHER).index(surface)])
    photo = photograph(surface)
    for i, crop in enumerate(crops(photo, TRAIN_ROWS, counts.train, rng)):
        _save(root / "train" / "good" / f"{i:04d}.png", crop)
    test = crops(photo, TEST_ROWS, counts.good + counts.per_kind * len(KINDS), rng)
    for i, crop in enumerate(test[: counts.good]):
        _save(root / "test" / "good" / f"{i:04d}.png", crop)
    planted = _plant_all(root, test[counts.good :], counts.per_kind, rng)
    others = crops(photograph(OTHER[surface]), TEST_ROWS, counts.other, rng)
    for i, crop in enumerate(others):
        _save(root / "test" / "other" / f"{i:04d}.png", crop)
    manifest = {"surface": surface, "other": OTHER[surface], "seed": seed, "planted": planted}
    (root / "plant.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return root


def _plant_all(
    root: Path, test: np.ndarray, per_kind: int, rng: np.random.Generator
) -> dict[str, dict[str, dict[str, float | str]]]:
    """Plants `per_kind` defects of each kind into successive test crops; saves image and mask."""
    planted: dict[str, dict[str, dict[str, float | str]]] = {}
    for k, kind in enumerate(KINDS):
        planted[kind] = {}
        for i, crop in enumerate(test[k * per_kind : (k + 1) * per_kind]):
            result = plant(kind, rng, crop)
            name = f"{i:04d}.png"
            _save(root / "test" / kind / name, result.image)
            _save(root / "masks" / kind / name, result.mask.astype(np.uint8) * 255)
            planted[kind][name] = result.params
    return planted


def read_mask(root: Path, kind: str, name: str) -> np.ndarray:
    """The boolean mask of test/<kind>/<name>; all False for good images and other surfaces."""
    path = root / "masks" / kind / name
    if not path.exists():
        return np.zeros((CROP, CROP), dtype=bool)
    with Image.open(path) as image:
        return np.asarray(image) > 127
