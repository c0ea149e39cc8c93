"""What every data source shares: the loaded `ImageSet`, the loader's contract, `DataError`,
the seeded test hold-out and the normal-class lookup."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, overload

import numpy as np

from modelfile.imaging import Color
from training.data.rows import ImageArray, select

TEST_FRACTION = 0.2  # share of every class held out as test when a source has no test split


class DataError(Exception):
    """One-line, user-facing problem with the data (missing files, bad format, unknown class...)."""


@dataclass(frozen=True)
class ImageSet:
    """A dataset's splits as uint8 images with int64 class indices."""

    name: str
    x_train: ImageArray  # uint8 (N, H, W, C), C in {1, 3}; rows of a memory map when cached
    y_train: np.ndarray  # int64 (N,) class indices
    x_test: ImageArray | None  # uint8 (M, H, W, C); None when the source has no test split
    y_test: np.ndarray | None
    class_names: list[str]  # class index -> human name
    color: Literal["L", "RGB"]
    skipped: tuple[tuple[str, str], ...] = ()  # (file, why) of image files that did not decode


class Splits(NamedTuple):
    """What a loader reads, before the images are adapted to the requested size and colour."""

    x_train: ImageArray
    y_train: np.ndarray
    x_test: ImageArray
    y_test: np.ndarray
    class_names: list[str]
    skipped: tuple[tuple[str, str], ...] = ()  # (file, why): unreadable files left out


# A loader reads a dataset's folder; size and colour are None where the caller left them open.
Loader = Callable[[Path, int | None, Color | None, int], Splits]


def resolve_class(data: ImageSet, normal_class: str | int) -> int:
    """Turns a class index ("1", 1) or a class name ("trouser", a folder name) into an index."""
    index = _class_index(data.class_names, normal_class)
    if index is None:
        raise DataError(
            f"{data.name} has no class {normal_class!r}; choose an index "
            f"0..{len(data.class_names) - 1} or one of: {', '.join(data.class_names)}"
        )
    if not np.any(data.y_train == index):
        raise DataError(f"{data.name}: class {data.class_names[index]!r} has no training images")
    return index


def _class_index(names: list[str], wanted: str | int) -> int | None:
    # A name wins over an index: folder classes may be named "1", "2", ...
    if isinstance(wanted, bool):
        return None
    if isinstance(wanted, int):
        return wanted if 0 <= wanted < len(names) else None
    text = str(wanted).strip()
    if text in names:
        return names.index(text)
    lowered = [n.lower() for n in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if not text.isdigit():
        return None
    # Zero-padded numeric names (GTSRB's "00014") also answer to their number.
    numeric = [i for i, n in enumerate(names) if n.isdigit() and int(n) == int(text)]
    if len(numeric) == 1:
        return numeric[0]
    return int(text) if int(text) < len(names) else None


@overload
def hold_out(
    x: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


@overload
def hold_out(
    x: ImageArray, y: np.ndarray, seed: int
) -> tuple[ImageArray, np.ndarray, ImageArray, np.ndarray]: ...


def hold_out(
    x: ImageArray, y: np.ndarray, seed: int
) -> tuple[ImageArray, np.ndarray, ImageArray, np.ndarray]:
    """Splits off a seeded TEST_FRACTION of every class (at least one image stays in train);
    the images of a memory map stay unread (`training.data.rows.Rows`)."""
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        n_test = min(round(len(members) * TEST_FRACTION), len(members) - 1)
        picked.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(picked)).astype(np.int64)
    train = np.ones(len(y), dtype=bool)
    train[test] = False
    return select(x, train), y[train], select(x, test), y[test]
