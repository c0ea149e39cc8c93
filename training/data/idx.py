"""MNIST and Fashion-MNIST: the IDX files of unsigned bytes, gzipped or not."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from modelfile.imaging import Color
from training.data.common import DataError, Loader, Splits

MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = [
    "t-shirt-top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
]  # fmt: skip
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_IDX_UBYTE = 0x08


def has_idx_files(root: Path) -> bool:
    """Whether all four IDX files (each plain or gzipped) are in `root`."""
    return all(_idx_path(root, base) is not None for base in IDX_FILES)


def _idx_path(root: Path, base: str) -> Path | None:
    for path in (root / base, root / f"{base}.gz"):
        if path.is_file():
            return path
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Reads an IDX file of unsigned bytes with `ndim` dimensions, gzipped or not."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read the IDX file ({e})") from e
    magic = (_IDX_UBYTE << 8) | ndim
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        found = raw[:4].hex() if len(raw) >= 4 else "too short"
        raise DataError(
            f"{path}: bad magic number ({found}); expected 0x{magic:08x}, "
            f"an IDX file of {ndim}-d unsigned bytes"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"{path}: the header promises {dims} ({expected} bytes) but the file has "
            f"{len(raw)} bytes (truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_idx(classes: list[str]) -> Loader:
    """A loader for an IDX dataset whose labels index `classes`."""

    def load(root: Path, size: int | None, color: Color | None, seed: int) -> Splits:
        x_train, y_train = _idx_split(root, "train", classes)
        x_test, y_test = _idx_split(root, "t10k", classes)
        return Splits(x_train, y_train, x_test, y_test, list(classes))

    return load


def _idx_split(root: Path, prefix: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    images, labels = (_idx_path(root, name) for name in names)
    if images is None or labels is None:
        missing = names[0] if images is None else names[1]
        raise DataError(f"{root}: {missing} (or {missing}.gz) is missing")
    x = _read_idx(images, ndim=3)[..., None]  # (N, H, W, 1)
    y = _read_idx(labels, ndim=1).astype(np.int64)
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    if len(y) and y.max() >= len(classes):
        raise DataError(f"{labels}: label {y.max()} is not one of the {len(classes)} classes")
    return x, y
