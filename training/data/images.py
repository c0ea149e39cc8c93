"""Decoding image files (GTSRB signs, folder datasets) into model pixels, under the model's
decode policy (`modelfile.imaging.load_for_model`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from modelfile.imaging import Color, load_for_model, to_model_array
from modelfile.metadata import DecodePolicy
from training.data.common import DataError

GRAY_MODES = frozenset({"L", "1", "I;16", "I;16L", "I;16B", "I;16N", "I", "F", "LA"})
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def read_image(
    path: Path,
    color: Color,
    size: int,
    crop: Callable[[Image.Image], Image.Image] | None = None,
    policy: DecodePolicy = "full",
) -> np.ndarray:
    """Decodes one image file into model pixels under the decode `policy`; with `crop` (boxes
    in the file's own pixels) the file is decoded in full and cropped first."""
    try:
        with Image.open(path) as img:
            if crop is None:
                return load_for_model(img, color, size, size, policy)
            img.load()
            return to_model_array(crop(img), color, size, size)
    except IMAGE_ERRORS as e:
        raise DataError(f"{path}: cannot read the image ({e})") from e


def image_mode(path: Path) -> str:
    """The PIL mode of an image file, read from its header."""
    try:
        with Image.open(path) as img:
            return img.mode
    except IMAGE_ERRORS as e:
        raise DataError(f"{path}: cannot read the image ({e})") from e
