"""CIFAR-10: the python pickle batches, unpickled with an allow-list so loading runs no code."""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from modelfile.imaging import Color
from training.data.common import DataError, Splits

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

_ARRAY = np.zeros(1, dtype=np.uint8)
# The only globals a CIFAR-10 batch needs: numpy's array reconstruction and bytes decoding.
_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _ARRAY.__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): _ARRAY.__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): _ARRAY.__reduce_ex__(5)[0],
    ("numpy._core.numeric", "_frombuffer"): _ARRAY.__reduce_ex__(5)[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _SafeUnpickler(pickle.Unpickler):
    """Refuses every global outside `_PICKLE_GLOBALS`, so loading runs no foreign code."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _PICKLE_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return allowed


def safe_unpickle(file: IO[bytes]) -> Any:
    """Unpickles data made of builtins, containers and numpy arrays; nothing else."""
    return _SafeUnpickler(file, encoding="bytes").load()


def cifar10_dir(root: Path) -> Path | None:
    """The folder holding all six batches: `root/cifar-10-batches-py` or `root` itself."""
    for candidate in (root / CIFAR10_DIR, root):
        if all((candidate / b).is_file() for b in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)):
            return candidate
    return None


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = safe_unpickle(f)
    except Exception as e:  # a malformed pickle fails in many ways; all mean "not a batch"
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({e})") from e
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
        or not isinstance(labels, list)
        or len(labels) != len(data)
    ):
        raise DataError(
            f"{path}: expected a dict with b'data' (uint8 N x 3072) and b'labels' (N ints)"
        )
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: labels are not integers ({e})") from e
    if len(y) and (y.min() < 0 or y.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"{path}: labels must lie in 0..{len(CIFAR10_CLASSES) - 1}")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are R, G, B planes
    return np.ascontiguousarray(x), y


def load_cifar10(root: Path, size: int | None, color: Color | None, seed: int) -> Splits:
    folder = cifar10_dir(root)
    if folder is None:
        raise DataError(f"cifar10: no {CIFAR10_DIR} batches in {root}")
    train = [_read_cifar10_batch(folder / b) for b in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = _read_cifar10_batch(folder / CIFAR10_TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return Splits(x_train, y_train, x_test, y_test, list(CIFAR10_CLASSES))
