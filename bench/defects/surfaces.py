"""Folder datasets made of crops of real photographs (scikit-image's wheel ships them), with
defects planted into test crops: the layout `deepsvdd train --dataset folder` reads.

<root>/train/good: crops of the photograph's training regions; <root>/test/good and
test/<kind>: crops of its test regions (never trained on), defects planted; test/other: crops
of another surface's test regions; <root>/masks/<kind>/<same name>.png: each defect's mask;
<root>/plant.json: what was planted where.

Two splits of a photograph into training and test regions (SPLITS):
- `rows`: training crops from the top half, test crops from the bottom rows. The photographs
  are taken at a slant, so the test rows are nearer the camera than any training crop: the
  normal test crops are shifted away from the training ones (larger bricks and stones, softer
  focus), and a model is judged on that shift as much as on the defects.
- `blocks`: the photograph cut in four 256-px quarters, training crops from the top-left and
  bottom-right ones, test crops from the other two, so both splits hold near and far rows and
  left and right columns alike, as a camera fixed over a line sees its parts. A 32-px gutter
  keeps every test pixel 32 px from any training pixel, as in `rows`.
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
# A region of the photograph: (top, bottom, left, right), bottom and right exclusive.
Region = tuple[int, int, int, int]
# Split name -> (training regions, test regions); test pixels lie 32 px from any training pixel.
SPLITS: dict[str, tuple[tuple[Region, ...], tuple[Region, ...]]] = {
    "rows": (((0, 256, 0, 512),), ((288, 512, 0, 512),)),
    "blocks": (
        ((0, 240, 0, 240), (272, 512, 272, 512)),
        ((0, 240, 272, 512), (272, 512, 0, 240)),
    ),
}


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
    photo: np.ndarray, regions: tuple[Region, ...], count: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` CROP x CROP crops whose pixels lie within one of `regions`, shared out among
    them as evenly as can be and shuffled together (one region: its crops as they come)."""
    if len(regions) == 1:
        return _region_crops(photo, regions[0], count, rng)
    shares = [count // len(regions) + (i < count % len(regions)) for i in range(len(regions))]
    out = np.concatenate(
        [_region_crops(photo, r, n, rng) for r, n in zip(regions, shares, strict=True) if n]
    )
    return out[rng.permutation(len(out))]


def _region_crops(
    photo: np.ndarray, region: Region, count: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` crops within `region`: a regular grid of top-left corners over it, each moved by
    a small random offset (up to 8 px)."""
    top, bottom, left, right = region
    top_max, left_max = bottom - CROP, right - CROP
    if top_max < top or left_max < left or bottom > photo.shape[0] or right > photo.shape[1]:
        raise ValueError(
            f"region {region} of a {photo.shape} photograph cannot hold a {CROP}-px crop"
        )
    side = int(np.ceil(np.sqrt(count)))
    tops = np.linspace(top, top_max, side)
    lefts = np.linspace(left, left_max, side)
    corners = np.array([(t, c) for t in tops for c in lefts])[rng.permutation(side * side)]
    corners = corners[:count] + rng.uniform(-8.0, 8.0, size=(count, 2))
    corners[:, 0] = np.clip(corners[:, 0], top, top_max)
    corners[:, 1] = np.clip(corners[:, 1], left, left_max)
    out = [photo[t : t + CROP, c : c + CROP] for t, c in corners.round().astype(int)]
    return np.stack(out)


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path)


def build(
    root: Path, surface: str, seed: int, counts: Counts | None = None, split: str = "rows"
) -> Path:
    """Writes the dataset of `surface`, `seed` and `split` (a key of SPLITS) under `root`
    (skipped when its plant.json is there: a finished build) and returns `root`."""
    counts = counts or Counts()
    if (root / "plant.json").exists():
        return root
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    train_regions, test_regions = SPLITS[split]
    rng = np.random.default_rng([seed, sorted(OTHER).index(surface)])
    photo = photograph(surface)
    for i, crop in enumerate(crops(photo, train_regions, counts.train, rng)):
        _save(root / "train" / "good" / f"{i:04d}.png", crop)
    test = crops(photo, test_regions, counts.good + counts.per_kind * len(KINDS), rng)
    for i, crop in enumerate(test[: counts.good]):
        _save(root / "test" / "good" / f"{i:04d}.png", crop)
    planted = _plant_all(root, test[counts.good :], counts.per_kind, rng)
    others = crops(photograph(OTHER[surface]), test_regions, counts.other, rng)
    for i, crop in enumerate(others):
        _save(root / "test" / "other" / f"{i:04d}.png", crop)
    manifest = {
        "surface": surface,
        "other": OTHER[surface],
        "seed": seed,
        "split": split,
        "planted": planted,
    }
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
