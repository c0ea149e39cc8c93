"""What `score` accepts as an image, turned into one multipart part each."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image | np.ndarray"
# The server reads the format from the bytes; this type is what it accepts for any of them.
GENERIC_TYPE = "application/octet-stream"


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _array_png(array: np.ndarray) -> bytes:
    """uint8 `(H, W)`, `(H, W, 1)` or `(H, W, 3)`; floats are taken as values in [0, 1]."""
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W) or (H, W, 1|3|4), not {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"an image array must be uint8 or float in [0, 1], not {array.dtype}")
        array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return _png(Image.fromarray(array))


def to_part(image: ImageInput, index: int) -> tuple[str, bytes, str]:
    """`(filename, bytes, content type)` of one image for the `files` field."""
    if isinstance(image, bytes):
        return f"image-{index}", image, GENERIC_TYPE
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        return path.name, path.read_bytes(), GENERIC_TYPE
    if isinstance(image, np.ndarray):
        return f"array-{index}.png", _array_png(image), "image/png"
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        return f"image-{index}.png", _png(image), "image/png"
    raise TypeError(f"image {index} is a {type(image).__name__}: give a path, bytes, PIL or array")
