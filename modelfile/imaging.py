"""Turning a decoded image into a model's input: the one resize and colour policy.

Training (folder datasets) and serving both call `to_model_array`, so an image gets the
same pixels whichever side prepares it. Policy: apply EXIF orientation; flatten alpha
onto white; convert to the model's colour mode (16-bit and float modes are scaled to
8 bits by their range, not clipped); resize the whole image to the model's height and
width with bilinear filtering (no crop, aspect ratio not kept).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageOps

Color = Literal["L", "RGB"]
RESAMPLE = Image.Resampling.BILINEAR
ORIENTATION_TAG = 0x0112
EIGHT_BIT_MODES = frozenset(
    ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
)


def _to_8bit(img: Image.Image) -> Image.Image:
    """Maps 16-bit, 32-bit integer and float images onto 0..255 by their value range."""
    if img.mode in EIGHT_BIT_MODES:
        return img
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) <= 65535):
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
    else:
        lo, hi = float(np.nanmin(arr, initial=0)), float(np.nanmax(arr, initial=0))
        arr = arr - lo
        top = hi - lo if hi > lo else 1.0
    scaled = np.clip(np.nan_to_num(arr) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img


def _needs_turning(img: Image.Image) -> bool:
    """Whether EXIF data asks for the image to be turned (orientation other than 1)."""
    if "exif" not in img.info and img.format not in ("JPEG", "MPO", "TIFF", "WEBP"):
        return False
    return int(img.getexif().get(ORIENTATION_TAG, 1)) != 1


def to_model_array(img: Image.Image, color: Color, height: int, width: int) -> np.ndarray:
    """Returns uint8 `(height, width, channels)` pixels for a model of the given input."""
    if img.mode == color and img.size == (width, height) and not _needs_turning(img):
        arr = np.asarray(img, dtype=np.uint8)  # already what the model takes: no copies
        return arr[:, :, None] if arr.ndim == 2 else arr
    img = ImageOps.exif_transpose(img)
    img = _flatten_alpha(_to_8bit(img))
    img = img.convert(color)
    if img.size != (width, height):
        img = img.resize((width, height), RESAMPLE)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr
