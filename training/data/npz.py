"""`.npz` archives with arrays x_train, y_train and optionally x_test, y_test."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from modelfile.imaging import Color
from training.data.common import DataError, Splits, hold_out


def _npz_path(root: Path) -> Path:
    if root.is_file():
        return root
    found = sorted(root.glob("*.npz")) if root.is_dir() else []
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise DataError(
            f"npz: {what} .npz files in {root}; pass --data-dir pointing at one .npz file"
        )
    return found[0]


def _npz_images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """Brings (N,H,W), (N,H,W,C) or (N,C,H,W) arrays, uint8 or floats in [0, 1], to uint8 NHWC."""
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim == 4 and x.shape[3] in (1, 3):
        pass
    elif x.ndim == 4 and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    else:
        raise DataError(
            f"{path}: {key} has shape {x.shape}; expected (N, H, W), (N, H, W, C) "
            "or (N, C, H, W) with C = 1 or 3"
        )
    if len(x) == 0:
        raise DataError(f"{path}: {key} holds no images")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind == "f":
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataError(f"{path}: {key} holds floats outside [0, 1]")
        return np.ascontiguousarray((x * 255).round().astype(np.uint8))
    raise DataError(f"{path}: {key} has dtype {x.dtype}; expected uint8 or floats in [0, 1]")


def _npz_labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iub":
        raise DataError(
            f"{path}: {key} must hold {n} integer labels, got {y.dtype} of shape {y.shape}"
        )
    return y.astype(np.int64)


def load_npz(root: Path, size: int | None, color: Color | None, seed: int) -> Splits:
    path = _npz_path(root)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from e
    if "x_train" not in arrays or "y_train" not in arrays:
        raise DataError(f"{path}: needs arrays x_train and y_train, found {sorted(arrays)}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: x_test and y_test go together, found {sorted(arrays)}")
    x_train = _npz_images(path, "x_train", arrays["x_train"])
    y_train = _npz_labels(path, "y_train", arrays["y_train"], len(x_train))
    if "x_test" in arrays:
        x_test = _npz_images(path, "x_test", arrays["x_test"])
        y_test = _npz_labels(path, "y_test", arrays["y_test"], len(x_test))
    else:
        x_train, y_train, x_test, y_test = hold_out(x_train, y_train, seed)
    # Labels may be any integers (say 3 and 7): classes are their sorted distinct values.
    values = np.unique(np.concatenate([y_train, y_test]))
    return Splits(
        x_train,
        np.searchsorted(values, y_train).astype(np.int64),
        x_test,
        np.searchsorted(values, y_test).astype(np.int64),
        [str(v) for v in values],
    )
