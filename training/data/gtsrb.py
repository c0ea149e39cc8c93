"""GTSRB: Final_Training/Images/<class>/*.ppm with GT-<class>.csv, signs cropped to their ROI."""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from modelfile.imaging import Color
from training.data.common import DataError, Splits, hold_out
from training.data.images import read_image

GTSRB_BORDER = 0.1  # share of the ROI's width and height trimmed from each side

Box = tuple[int, int, int, int]  # x1, y1, x2, y2, inclusive


class _Sign(NamedTuple):
    path: Path
    roi: Box
    class_id: int


def _crop_sign(img: Image.Image, roi: Box, path: Path) -> Image.Image:
    x1, y1 = max(roi[0], 0), max(roi[1], 0)
    x2, y2 = min(roi[2], img.width - 1), min(roi[3], img.height - 1)
    dx = round((x2 - x1 + 1) * GTSRB_BORDER)
    dy = round((y2 - y1 + 1) * GTSRB_BORDER)
    left, top, right, bottom = x1 + dx, y1 + dy, x2 + 1 - dx, y2 + 1 - dy
    if right <= left or bottom <= top:
        raise DataError(f"{path}: the ROI {roi} leaves no pixels inside a {img.size} image")
    return img.crop((left, top, right, bottom))


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


def load_gtsrb(root: Path, size: int | None, color: Color | None, seed: int) -> Splits:
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
        x_train, y_train, x_test, y_test = hold_out(x_train, y_train, seed)
    else:
        # Test signs of classes absent from the training folders have no index: left out.
        listed = _read_gtsrb_csv(test_csv, _gtsrb_test_images(images_dir))
        test = [sign for sign in listed if sign.class_id in index]
        x_test, y_test = _read_signs(test, index, color, size)
    return Splits(x_train, y_train, x_test, y_test, classes)


def _read_signs(
    signs: list[_Sign], index: dict[int, int], color: Color, size: int
) -> tuple[np.ndarray, np.ndarray]:
    channels = 1 if color == "L" else 3
    x = np.empty((len(signs), size, size, channels), dtype=np.uint8)
    for i, sign in enumerate(signs):
        x[i] = read_image(sign.path, color, size, partial(_crop_sign, roi=sign.roi, path=sign.path))
    y = np.array([index.get(s.class_id, -1) for s in signs], dtype=np.int64)
    if len(y) and y.min() < 0:
        bad = signs[int(np.argmin(y))]
        raise DataError(
            f"gtsrb: {bad.path} has ClassId {bad.class_id}, not one of the class folders"
        )
    return x, y
