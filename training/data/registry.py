"""The data sources by name, where each is looked for, and `load_dataset`, which reads one
and adapts its images to the requested size and colour."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from modelfile.imaging import Color, to_model_array
from modelfile.metadata import DecodePolicy
from training.config import DATASETS
from training.data.cifar10 import cifar10_dir, load_cifar10
from training.data.common import DataError, ImageSet, Loader
from training.data.folder import load_folder
from training.data.gtsrb import load_gtsrb
from training.data.idx import FASHION_MNIST_CLASSES, MNIST_CLASSES, has_idx_files, load_idx
from training.data.npz import load_npz
from training.data.rows import ImageArray

DOWNLOADABLE = ("mnist", "fashion-mnist", "cifar10")

# Debian's dataset-fashion-mnist package installs the IDX files here.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

LOADERS: dict[str, Loader] = {
    "mnist": load_idx(MNIST_CLASSES),
    "fashion-mnist": load_idx(FASHION_MNIST_CLASSES),
    "cifar10": load_cifar10,
    "gtsrb": load_gtsrb,
    "folder": load_folder,
    "npz": load_npz,
}


def default_data_dir(name: str) -> Path:
    """Where a dataset is looked for (and downloaded to) when no directory is given."""
    if name == "fashion-mnist" and has_files(name, SYSTEM_FASHION_MNIST_DIR):
        return SYSTEM_FASHION_MNIST_DIR
    root = os.environ.get("DEEPSVDD_DATA_DIR")
    cache = Path(root) if root else Path.home() / ".cache" / "deepsvdd" / "data"
    return cache.expanduser() / name


def data_root(name: str, data_dir: str | Path | None) -> Path:
    """The folder dataset `name` is read from: `data_dir` if given, else its default."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir(name)


def has_files(name: str, root: Path) -> bool:
    """Whether a downloadable dataset's files are in `root` (checked before loading)."""
    if name == "cifar10":
        return cifar10_dir(root) is not None
    return has_idx_files(root)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    decode: DecodePolicy = "full",
) -> ImageSet:
    """Loads a dataset, adapted to `image_size` x `image_size` and `channels` when given.

    It reads only what is on disk: fetching a downloadable dataset is the caller's step
    before (`training.data.download.download_missing`). `cache_dir` (folder only) keeps the
    decoded images in a memory-mapped cache (training/data/cache.py). `decode` is the decode
    policy of a folder's files (`modelfile.imaging.load_for_model`).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise DataError(f"image size must be a positive integer, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels!r}")
    color: Color | None = None if channels is None else ("L" if channels == 1 else "RGB")
    root = data_root(name, data_dir)
    if name in DOWNLOADABLE and not has_files(name, root):
        raise DataError(
            f"{name}: no data in {root}; pass --download to fetch it "
            "or --data-dir to point at a copy"
        )
    if name == "folder":
        splits = load_folder(root, image_size, color, seed, cache_dir=cache_dir, policy=decode)
    else:
        splits = LOADERS[name](root, image_size, color, seed)
    x_train = splits.x_train
    height, width = (image_size, image_size) if image_size else x_train.shape[1:3]
    color = color or ("L" if x_train.shape[3] == 1 else "RGB")
    return ImageSet(
        name=name,
        x_train=_adapt(x_train, color, height, width),
        y_train=splits.y_train,
        x_test=_adapt(splits.x_test, color, height, width),
        y_test=splits.y_test,
        class_names=splits.class_names,
        color=color,
        skipped=splits.skipped,
    )


def _adapt(x: ImageArray, color: Color, height: int, width: int) -> ImageArray:
    """Resizes and converts `x` through the model-file image policy, only where needed."""
    channels = 1 if color == "L" else 3
    if x.shape[1:] == (height, width, channels):
        return x
    if x.shape[1:] == (height, width, 1):  # L -> RGB copies the grey value: no PIL needed
        return np.repeat(x, 3, axis=3)
    out = np.empty((len(x), height, width, channels), dtype=np.uint8)
    for i in range(len(x)):
        pixels = x[i]
        img = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
        out[i] = to_model_array(img, color, height, width)
    return out
