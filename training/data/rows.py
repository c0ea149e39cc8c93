"""Selected rows of a uint8 image array, read only when indexed: a subset of a memory-mapped
cache (one class, a split) without copying it into memory."""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np


class Rows:
    """`base[index]` as a lazy array: `len`, `shape`, `dtype`, slicing and fancy indexing
    read just the rows asked for; `np.asarray(rows)` reads them all."""

    def __init__(self, base: np.ndarray, index: np.ndarray) -> None:
        self.base = base
        self.index = np.asarray(index, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.base[self.index[key]])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self.base[self.index])
        return out if dtype is None else out.astype(dtype)

    def take(self, selection: np.ndarray) -> Rows:
        """A subset (boolean mask or row numbers) of these rows, still unread."""
        return Rows(self.base, self.index[selection])


# What the training side accepts as images: an array in memory, or rows of a memory map.
ImageArray = np.ndarray | Rows


def release_pages(images: ImageArray) -> None:
    """Drops a memory map's pages from this process's resident set. They stay in the page
    cache, so reading them again costs a minor fault, not I/O; without this, every page an
    epoch touched would count in the process's RSS until the kernel reclaims it."""
    base = images.base if isinstance(images, Rows) else images
    mapping = getattr(base, "_mmap", None)  # numpy.memmap keeps its mmap.mmap here
    if isinstance(mapping, mmap.mmap):
        mapping.madvise(mmap.MADV_DONTNEED)


def every(images: ImageArray, start: int, step: int) -> ImageArray:
    """Rows start, start + step, ...: a view of an array, a lazy `Rows` of rows."""
    if isinstance(images, Rows):
        return images.take(np.arange(start, len(images), step))
    return images[start::step]


def select(images: ImageArray, selection: np.ndarray) -> ImageArray:
    """`images[selection]`: copied for an array in memory, a lazy `Rows` for a memory map."""
    if isinstance(images, Rows):
        return images.take(selection)
    if isinstance(images, np.memmap):
        return Rows(images, np.arange(len(images))[selection])
    return images[selection]
