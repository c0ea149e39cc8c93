"""Image datasets for one-class training, all loaded as uint8 `(N, H, W, C)` arrays.

MNIST and Fashion-MNIST (IDX files), CIFAR-10 (python pickle batches, unpickled safely),
GTSRB (official training layout), folders of images and `.npz` arrays.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import numpy as np
from PIL import Image

from modelfile.imaging import Color, to_model_array

DATASETS = ("mnist", "fashion-mnist", "cifar10", "gtsrb", "folder", "npz")
DOWNLOADABLE = ("mnist", "fashion-mnist", "cifar10")

MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = [
    "t-shirt-top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

# Debian's dataset-fashion-mnist package installs the IDX files here.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

TEST_FRACTION = 0.2  # share of every class held out as test when a source has no test split
GTSRB_BORDER = 0.1  # share of the ROI's width and height trimmed from each side
GRAY_MODES = frozenset({"L", "1", "I;16", "I;16L", "I;16B", "I;16N", "I", "F", "LA"})
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class DataError(Exception):
    """One-line, user-facing problem with the data (missing files, bad format, unknown class...)."""


@dataclass(frozen=True)
class ImageSet:
    """A dataset's splits as uint8 images with int64 class indices."""

    name: str
    x_train: np.ndarray  # uint8 (N, H, W, C), C in {1, 3}
    y_train: np.ndarray  # int64 (N,) class indices
    x_test: np.ndarray | None  # uint8 (M, H, W, C); None when the source has no test split
    y_test: np.ndarray | None
    class_names: list[str]  # class index -> human name
    color: Literal["L", "RGB"]


class _Splits(NamedTuple):
    """What a loader reads, before the images are adapted to the requested size and colour."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


# A loader reads a dataset's folder; size and colour are None where the caller left them open.
Loader = Callable[[Path, int | None, Color | None, int], _Splits]


def default_data_dir(name: str) -> Path:
    """Where a dataset is looked for (and downloaded to) when no directory is given."""
    if name == "fashion-mnist" and _has_files(name, SYSTEM_FASHION_MNIST_DIR):
        return SYSTEM_FASHION_MNIST_DIR
    root = os.environ.get("DEEPSVDD_DATA_DIR")
    cache = Path(root) if root else Path.home() / ".cache" / "deepsvdd" / "data"
    return cache.expanduser() / name


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """Loads a dataset, adapted to `image_size` x `image_size` and `channels` when given."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise DataError(f"image size must be a positive integer, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels!r}")
    color: Color | None = None if channels is None else ("L" if channels == 1 else "RGB")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir(name)
    if name in DOWNLOADABLE and not _has_files(name, root):
        if not download:
            raise DataError(
                f"{name}: no data in {root}; pass --download to fetch it "
                "or --data-dir to point at a copy"
            )
        from training.download import fetch  # download.py imports DataError from here

        fetch(name, root)
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
    )


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


def _has_files(name: str, root: Path) -> bool:
    """Whether a downloadable dataset's files are in `root` (checked before loading)."""
    if name == "cifar10":
        return _cifar10_dir(root) is not None
    return all(_idx_path(root, base) is not None for base in IDX_FILES)


def _adapt(x: np.ndarray, color: Color, height: int, width: int) -> np.ndarray:
    """Resizes and converts `x` through the service's image policy, only where needed."""
    channels = 1 if color == "L" else 3
    if x.shape[1:] == (height, width, channels):
        return x
    if x.shape[1:] == (height, width, 1):  # L -> RGB copies the grey value: no PIL needed
        return np.repeat(x, 3, axis=3)
    out = np.empty((len(x), height, width, channels), dtype=np.uint8)
    for i, pixels in enumerate(x):
        img = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
        out[i] = to_model_array(img, color, height, width)
    return out


def _hold_out(
    x: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splits off a seeded TEST_FRACTION of every class (at least one image stays in train)."""
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        n_test = min(round(len(members) * TEST_FRACTION), len(members) - 1)
        picked.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(picked)).astype(np.int64)
    train = np.ones(len(y), dtype=bool)
    train[test] = False
    return x[train], y[train], x[test], y[test]


# --- MNIST and Fashion-MNIST: IDX files -------------------------------------------------------

_IDX_UBYTE = 0x08


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


def _load_idx(classes: list[str]) -> Loader:
    def load(root: Path, size: int | None, color: Color | None, seed: int) -> _Splits:
        x_train, y_train = _idx_split(root, "train", classes)
        x_test, y_test = _idx_split(root, "t10k", classes)
        return _Splits(x_train, y_train, x_test, y_test, list(classes))

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


# --- CIFAR-10: python pickle batches, unpickled with an allow-list ----------------------------

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


def _cifar10_dir(root: Path) -> Path | None:
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


def _load_cifar10(root: Path, size: int | None, color: Color | None, seed: int) -> _Splits:
    folder = _cifar10_dir(root)
    if folder is None:
        raise DataError(f"cifar10: no {CIFAR10_DIR} batches in {root}")
    train = [_read_cifar10_batch(folder / b) for b in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = _read_cifar10_batch(folder / CIFAR10_TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return _Splits(x_train, y_train, x_test, y_test, list(CIFAR10_CLASSES))


# --- Decoding image files ---------------------------------------------------------------------


Box = tuple[int, int, int, int]  # x1, y1, x2, y2, inclusive


def _read_image(path: Path, color: Color, size: int, roi: Box | None = None) -> np.ndarray:
    """Decodes one image file into model pixels, cropping to `roi` (less a border) first."""
    try:
        with Image.open(path) as img:
            img.load()
            picture = img if roi is None else _crop_sign(img, roi, path)
            return to_model_array(picture, color, size, size)
    except IMAGE_ERRORS as e:
        raise DataError(f"{path}: cannot read the image ({e})") from e


def _crop_sign(img: Image.Image, roi: Box, path: Path) -> Image.Image:
    x1, y1 = max(roi[0], 0), max(roi[1], 0)
    x2, y2 = min(roi[2], img.width - 1), min(roi[3], img.height - 1)
    dx = round((x2 - x1 + 1) * GTSRB_BORDER)
    dy = round((y2 - y1 + 1) * GTSRB_BORDER)
    left, top, right, bottom = x1 + dx, y1 + dy, x2 + 1 - dx, y2 + 1 - dy
    if right <= left or bottom <= top:
        raise DataError(f"{path}: the ROI {roi} leaves no pixels inside a {img.size} image")
    return img.crop((left, top, right, bottom))


def _image_mode(path: Path) -> str:
    try:
        with Image.open(path) as img:
            return img.mode
    except IMAGE_ERRORS as e:
        raise DataError(f"{path}: cannot read the image ({e})") from e


# --- GTSRB: Final_Training/Images/<class>/*.ppm with GT-<class>.csv ---------------------------


class _Sign(NamedTuple):
    path: Path
    roi: Box
    class_id: int


def _gtsrb_images_dir(root: Path) -> Path:
    for candidate in (
        root / "GTSRB" / "Final_Training" / "Images",
        root / "Final_Training" / "Images",
        root,
    ):
        if candidate.is_dir() and any(_is_gtsrb_class(p) for p in candidate.iterdir()):
            return candidate
    raise DataError(
        f"gtsrb: no GTSRB/Final_Training/Images/<5-digit class> folders in {root}; "
        "pass --data-dir pointing at the extracted GTSRB training set"
    )


def _is_gtsrb_class(path: Path) -> bool:
    return path.is_dir() and len(path.name) == 5 and path.name.isdigit()


def _read_gtsrb_csv(csv_path: Path, images_dir: Path) -> list[_Sign]:
    if not csv_path.is_file():
        raise DataError(f"gtsrb: {csv_path} is missing")
    signs = []
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f, delimiter=";")
        try:
            for row in reader:
                roi = (
                    int(row["Roi.X1"]),
                    int(row["Roi.Y1"]),
                    int(row["Roi.X2"]),
                    int(row["Roi.Y2"]),
                )
                signs.append(_Sign(images_dir / row["Filename"], roi, int(row["ClassId"])))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{csv_path}, line {reader.line_num}: expected Filename;...;Roi.X1;Roi.Y1;"
                f"Roi.X2;Roi.Y2;ClassId ({e!r})"
            ) from e
    return signs


def _gtsrb_test_images(images_dir: Path) -> Path:
    """GTSRB/Final_Test/Images, beside the GTSRB/Final_Training/Images folder `images_dir`."""
    return images_dir.parent.parent / "Final_Test" / "Images"


def _gtsrb_test_csv(images_dir: Path) -> Path | None:
    """GT-final_test.csv (the test set's labels, shipped apart from its images), if present."""
    test_images = _gtsrb_test_images(images_dir)
    if not test_images.is_dir():
        return None
    gtsrb = images_dir.parent.parent
    for candidate in (test_images, gtsrb, gtsrb.parent):
        if (candidate / "GT-final_test.csv").is_file():
            return candidate / "GT-final_test.csv"
    return None


def _load_gtsrb(root: Path, size: int | None, color: Color | None, seed: int) -> _Splits:
    images_dir = _gtsrb_images_dir(root)
    classes = sorted(p.name for p in images_dir.iterdir() if _is_gtsrb_class(p))
    index = {int(name): i for i, name in enumerate(classes)}
    color, size = color or "RGB", size or 32
    train = [
        sign
        for name in classes
        for sign in _read_gtsrb_csv(images_dir / name / f"GT-{name}.csv", images_dir / name)
    ]
    if not train:
        raise DataError(f"gtsrb: the GT-<class>.csv files in {images_dir} list no images")
    x_train, y_train = _read_signs(train, index, color, size)
    test_csv = _gtsrb_test_csv(images_dir)
    if test_csv is None:
        x_train, y_train, x_test, y_test = _hold_out(x_train, y_train, seed)
    else:
        # Test signs of classes absent from the training folders have no index: left out.
        listed = _read_gtsrb_csv(test_csv, _gtsrb_test_images(images_dir))
        test = [sign for sign in listed if sign.class_id in index]
        x_test, y_test = _read_signs(test, index, color, size)
    return _Splits(x_train, y_train, x_test, y_test, classes)


def _read_signs(
    signs: list[_Sign], index: dict[int, int], color: Color, size: int
) -> tuple[np.ndarray, np.ndarray]:
    channels = 1 if color == "L" else 3
    x = np.empty((len(signs), size, size, channels), dtype=np.uint8)
    for i, sign in enumerate(signs):
        x[i] = _read_image(sign.path, color, size, sign.roi)
    y = np.array([index.get(s.class_id, -1) for s in signs], dtype=np.int64)
    if len(y) and y.min() < 0:
        bad = signs[int(np.argmin(y))]
        raise DataError(
            f"gtsrb: {bad.path} has ClassId {bad.class_id}, not one of the class folders"
        )
    return x, y


# --- Folders: <dir>/train/<class>/* and optionally <dir>/test/<class>/* -----------------------


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
    files: dict[str, list[Path]], classes: list[str], color: Color, size: int
) -> tuple[np.ndarray, np.ndarray]:
    index = {name: i for i, name in enumerate(classes)}
    paths = [(path, index[name]) for name, group in files.items() for path in group]
    channels = 1 if color == "L" else 3
    x = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    for i, (path, _) in enumerate(paths):
        x[i] = _read_image(path, color, size)
    return x, np.array([label for _, label in paths], dtype=np.int64)


def _load_folder(root: Path, size: int | None, color: Color | None, seed: int) -> _Splits:
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
        grey = all(_image_mode(p) in GRAY_MODES for group in train.values() for p in group)
        color = "L" if grey else "RGB"
    size = size or (28 if color == "L" else 32)
    x_train, y_train = _read_folder_split(train, classes, color, size)
    if test is None:
        x_train, y_train, x_test, y_test = _hold_out(x_train, y_train, seed)
    else:
        x_test, y_test = _read_folder_split(test, classes, color, size)
    return _Splits(x_train, y_train, x_test, y_test, classes)


# --- npz: arrays x_train, y_train and optionally x_test, y_test -------------------------------


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


def _load_npz(root: Path, size: int | None, color: Color | None, seed: int) -> _Splits:
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
        x_train, y_train, x_test, y_test = _hold_out(x_train, y_train, seed)
    # Labels may be any integers (say 3 and 7): classes are their sorted distinct values.
    values = np.unique(np.concatenate([y_train, y_test]))
    return _Splits(
        x_train,
        np.searchsorted(values, y_train).astype(np.int64),
        x_test,
        np.searchsorted(values, y_test).astype(np.int64),
        [str(v) for v in values],
    )


LOADERS: dict[str, Loader] = {
    "mnist": _load_idx(MNIST_CLASSES),
    "fashion-mnist": _load_idx(FASHION_MNIST_CLASSES),
    "cifar10": _load_cifar10,
    "gtsrb": _load_gtsrb,
    "folder": _load_folder,
    "npz": _load_npz,
}
