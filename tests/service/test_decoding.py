"""Image decoding: every accepted format and odd mode, and the hostile corpus, without HTTP."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from service.decoding import decode_image
from service.errors import ApiError
from service.imaging import to_model_array
from service.metadata import InputSpec
from tests.service.support import broken_images, odd_images, png_declaring

GREY = InputSpec(channels=1, height=28, width=28, color="L")
RGB = InputSpec(channels=3, height=32, width=32, color="RGB")


@pytest.mark.parametrize("name", sorted(odd_images()))
@pytest.mark.parametrize("spec", [GREY, RGB], ids=["L", "RGB"])
def test_every_format_and_mode_decodes_to_the_model_input(name: str, spec: InputSpec) -> None:
    data, _ = odd_images()[name]
    pixels = decode_image(data, name, spec, max_pixels=1_000_000)
    assert pixels.shape == (spec.channels, spec.height, spec.width)
    assert pixels.dtype == np.float32
    assert np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert pixels.std() > 0  # the noise survived decoding


def test_decoding_matches_the_shared_imaging_policy() -> None:
    data, _ = odd_images()["rotated.jpg"]
    expected = to_model_array(Image.open(io.BytesIO(data)), "RGB", 32, 32)
    pixels = decode_image(data, "rotated.jpg", RGB, max_pixels=1_000_000)
    np.testing.assert_allclose(pixels * 255.0, expected.transpose(2, 0, 1), atol=1e-3)


def test_exif_orientation_is_applied() -> None:
    data, _ = odd_images()["rotated.jpg"]
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert upright.size == (20, 40)  # stored 40 x 20, displayed rotated
    tall = InputSpec(channels=3, height=40, width=20, color="RGB")
    pixels = decode_image(data, "rotated.jpg", tall, max_pixels=1_000_000)
    expected = np.asarray(upright.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(pixels, expected, atol=1e-6)


def test_animated_gif_and_multipage_tiff_use_the_first_frame() -> None:
    for name in ("animated.gif", "pages.tiff"):
        data, _ = odd_images()[name]
        first = Image.open(io.BytesIO(data))
        first.seek(0)
        expected = to_model_array(first.copy(), "RGB", 32, 32).transpose(2, 0, 1) / 255.0
        assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
        np.testing.assert_allclose(decode_image(data, name, RGB, 1_000_000), expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n, v in broken_images().items() if v[2] != 415))
def test_hostile_bytes_are_refused_with_a_client_error(name: str) -> None:
    data, _, status = broken_images()[name]
    with pytest.raises(ApiError) as info:
        decode_image(data, f"file {name!r}", GREY, max_pixels=40_000_000)
    assert info.value.status == status
    assert name in info.value.message


def test_the_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(ApiError) as info:
        decode_image(png_declaring(101, 100), "wide.png", GREY, max_pixels=10_000)
    assert info.value.status == 413 and info.value.code == "too_many_pixels"
    assert "101x100" in info.value.message


def test_formats_outside_the_list_are_refused() -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="ICO")
    with pytest.raises(ApiError) as info:
        decode_image(out.getvalue(), "icon.ico", GREY, max_pixels=1_000_000)
    assert info.value.status == 400 and "supported format" in info.value.message
