"""Folders of images: <dir>/train/<class>/* and optionally <dir>/test/<class>/*."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from modelfile.imaging import Color
from modelfile.metadata import DecodePolicy
from training.data.cache import cached_images
from training.data.common import DataError, Splits, hold_out
from training.data.images import GRAY_MODES, image_mode, read_image
from training.data.rows import ImageArray


def _class_files(split_dir: Path) -> dict[str, list[Path]]:
    """Class folder name -> its image files (hidden files skipped)."""
    classes = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"folder: {split_dir} has no class sub-folders (expected {split_dir}/<class>/*)"
        )
    files = {}
    for class_dir in classes:
        images = sorted(
            p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith(".")
        )
        if not images:
            raise DataError(f"folder: {class_dir} holds no images")
        files[class_dir.name] = images
    return files


def _read_folder_split(
    files: dict[str, list[Path]],
    classes: list[str],
    color: Color,
    size: int,
    policy: DecodePolicy,
    cache_dir: Path | None = None,
) -> tuple[ImageArray, np.ndarray, list[tuple[str, str]]]:
    """Decodes every file under the decode `policy`; one that does not decode is left out and
    listed with the reason, so that a user sees all the bad files of a folder at once. With
    `cache_dir` the images come from (or go to) a memory map, and a file that does not decode
    stops the build: the cache holds every file it is keyed by."""
    index = {name: i for i, name in enumerate(classes)}
    paths = [(path, index[name]) for name, group in files.items() for path in group]
    channels = 1 if color == "L" else 3
    if cache_dir is not None:
        labels = np.array([label for _, label in paths], dtype=np.int64)
        images = cached_images(
            cache_dir,
            [path for path, _ in paths],
            size,
            channels,
            partial(_cached_read, color, size, policy),
            policy,
        )
        return images, labels, []
    x = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    keep = np.ones(len(paths), dtype=bool)
    skipped = []
    for i, (path, _) in enumerate(paths):
        try:
            x[i] = read_image(path, color, size, policy=policy)
        except DataError as e:
            keep[i] = False
            skipped.append((str(path), str(e.__cause__ or e)))
    y = np.array([label for _, label in paths], dtype=np.int64)
    return x[keep], y[keep], skipped


def _cached_read(color: Color, size: int, policy: DecodePolicy, path: Path) -> np.ndarray:
    try:
        return read_image(path, color, size, policy=policy)
    except DataError as exc:
        raise DataError(
            f"{exc}; --cache-dir caches every file of the folder: remove or fix it, "
            "or train without --cache-dir to skip unreadable files"
        ) from exc


def _mode_or_none(path: Path) -> str | None:
    try:
        return image_mode(path)
    except DataError:
        return None  # listed as skipped when the images are decoded


def load_folder(
    root: Path,
    size: int | None,
    color: Color | None,
    seed: int,
    cache_dir: Path | None = None,
    policy: DecodePolicy = "full",
) -> Splits:
    """Reads the folder, its files decoded under the decode `policy`; with `cache_dir`, decoded
    images come from (or go to) a memory map."""
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        raise DataError(
            f"folder: {train_dir} is missing; pass --data-dir pointing at a folder "
            "with train/<class>/ images"
        )
    train = _class_files(train_dir)
    test = _class_files(test_dir) if test_dir.is_dir() else None
    classes = sorted(set(train) | set(test or {}))
    if color is None:
        modes = [_mode_or_none(p) for group in train.values() for p in group]
        color = "L" if all(m in GRAY_MODES for m in modes if m is not None) else "RGB"
    size = size or (28 if color == "L" else 32)
    x_train, y_train, skipped = _read_folder_split(train, classes, color, size, policy, cache_dir)
    if test is None:
        x_train, y_train, x_test, y_test = hold_out(x_train, y_train, seed)
    else:
        x_test, y_test, skipped_test = _read_folder_split(
            test, classes, color, size, policy, cache_dir
        )
        skipped += skipped_test
    return Splits(x_train, y_train, x_test, y_test, classes, tuple(skipped))
