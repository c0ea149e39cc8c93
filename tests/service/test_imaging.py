"""The one resize and colour policy: the fast path for ready-sized images changes nothing."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from modelfile.imaging import ORIENTATION_TAG, to_model_array


def _reopen(img: Image.Image, fmt: str, **save: object) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_ready_sized_image_passes_through_unchanged() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    out = to_model_array(_reopen(Image.fromarray(pixels), "PNG"), "L", 28, 28)
    assert out.shape == (28, 28, 1)
    assert np.array_equal(out[:, :, 0], pixels)


def test_ready_sized_image_with_exif_orientation_is_still_turned() -> None:
    pixels = np.zeros((28, 28), np.uint8)
    pixels[:4, :4] = 255  # a bright top-left corner
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 3  # rotated 180 degrees
    for fmt in ("PNG", "JPEG"):
        out = to_model_array(_reopen(Image.fromarray(pixels), fmt, exif=exif), "L", 28, 28)
        assert out[-2:, -2:].mean() > 200 and out[:2, :2].mean() < 50, fmt


def test_other_sizes_and_modes_take_the_full_path() -> None:
    rgb = Image.new("RGB", (40, 30), (255, 0, 0))
    out = to_model_array(rgb, "L", 28, 28)
    assert out.shape == (28, 28, 1) and int(out[0, 0, 0]) == 76  # ITU-R 601 luma of red
