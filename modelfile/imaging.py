"""Turning an image file into a model's input: the one decode, resize and colour policy.

Training (folder datasets) and serving both call `load_for_model` (or `to_model_array` on an
image already decoded), so an image gets the same pixels whichever side prepares it. Decode
policy, from the model's metadata: "full" decodes every pixel; "reduced" has a JPEG decoded
by libjpeg's DCT scaling at 1/2, 1/4 or 1/8 of its size, the smallest of these still at
least the model's input (after EXIF orientation), and as grey straight from the luma when
the model is grey; other formats decode in full either way. Then: apply EXIF orientation;
flatten alpha onto white; convert to the model's colour mode (16-bit and float modes are
scaled to 8 bits by their range, not clipped); resize the whole image to the model's height
and width with bilinear filtering (no crop, aspect ratio not kept).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from modelfile.metadata import DecodePolicy

Color = Literal["L", "RGB"]
RESAMPLE = Image.Resampling.BILINEAR
ORIENTATION_TAG = 0x0112
# EXIF orientations that turn the image a quarter: its stored width is its displayed height.
QUARTER_TURNS = frozenset((5, 6, 7, 8))
DCT_SCALED_FORMATS = frozenset(("JPEG", "MPO"))
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


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 to 8) the image asks for; 1 when it has none."""
    if "exif" not in img.info and img.format not in ("JPEG", "MPO", "TIFF", "WEBP"):
        return 1
    return int(img.getexif().get(ORIENTATION_TAG, 1))


def _needs_turning(img: Image.Image) -> bool:
    """Whether EXIF data asks for the image to be turned (orientation other than 1)."""
    return _orientation(img) != 1


def _draft(img: Image.Image, color: Color, height: int, width: int) -> None:
    """Before loading: has libjpeg decode at the smallest DCT scale still at least the model's
    input once turned upright, in grey for a grey model. No effect on other formats."""
    if img.format not in DCT_SCALED_FORMATS:
        return
    stored = (height, width) if _orientation(img) in QUARTER_TURNS else (width, height)
    img.draft(color, stored)


def load_for_model(
    img: Image.Image, color: Color, height: int, width: int, policy: DecodePolicy
) -> np.ndarray:
    """Decodes an opened, not yet loaded image under the model's decode `policy` and returns
    uint8 `(height, width, channels)` pixels for it (`to_model_array`)."""
    if policy == "reduced":
        _draft(img, color, height, width)
    img.load()
    return to_model_array(img, color, height, width)


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
