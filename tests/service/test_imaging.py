"""The one decode, resize and colour policy: the fast path for ready-sized images changes
nothing, and reduced decoding asks libjpeg for the right scale and colour."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modelfile.imaging import ORIENTATION_TAG, QUARTER_TURNS, load_for_model, to_model_array


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


def _turned_jpeg(orientation: int, mode: str = "RGB") -> Image.Image:
    """A 160 x 40 JPEG (stored) with the EXIF `orientation`."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    noise = np.random.default_rng(1).integers(0, 256, (40, 160, 3), dtype=np.uint8)
    return _reopen(Image.fromarray(noise).convert(mode), "JPEG", exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_jpegs_decode_at_the_smallest_scale_covering_the_turned_input(
    orientation: int,
) -> None:
    # Upright, the model's 80 x 20 (height x width) input fits a quarter-turned image at 1/2;
    # an image that is not turned is 160 wide and 40 high, and 1/2 would leave it 20 high.
    img = _turned_jpeg(orientation)
    out = load_for_model(img, "RGB", 80, 20, "reduced")
    quarter = orientation in QUARTER_TURNS
    assert img.size == ((80, 20) if quarter else (160, 40))
    assert out.shape == (80, 20, 3)
    img = _turned_jpeg(orientation)
    load_for_model(img, "RGB", 20, 80, "reduced")
    assert img.size == ((160, 40) if quarter else (80, 20))


def test_reduced_decoding_gives_grey_models_the_luma_of_colour_jpegs() -> None:
    img = _turned_jpeg(1)
    out = load_for_model(img, "L", 10, 40, "reduced")
    assert img.mode == "L" and img.size == (40, 10)  # 1/4, decoded as grey by libjpeg
    assert out.shape == (10, 40, 1)
    img = _turned_jpeg(1)
    load_for_model(img, "L", 10, 40, "full")
    assert img.mode == "RGB" and img.size == (160, 40)  # full: every pixel, converted after


def test_reduced_decoding_leaves_other_formats_whole() -> None:
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for fmt in ("PNG", "WEBP", "BMP"):
        full = load_for_model(_reopen(Image.fromarray(noise), fmt), "RGB", 16, 16, "full")
        reduced = load_for_model(_reopen(Image.fromarray(noise), fmt), "RGB", 16, 16, "reduced")
        np.testing.assert_array_equal(full, reduced)
