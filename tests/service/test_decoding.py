"""Image decoding: every accepted format and odd mode, and the hostile corpus, without HTTP."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from modelfile.imaging import to_model_array
from modelfile.metadata import InputSpec
from modelfile.pixels import to_input
from service.decoding import decode_image, decode_pixels, fast_png
from service.errors import ApiError
from tests.support.images import broken_images, image_bytes, noise_image, odd_images, png_declaring

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


# --- The libspng fast path gives Pillow's pixels or steps aside -------------------------------


def _both(data: bytes, spec: InputSpec) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(fast path pixels or None, Pillow pixels or None when Pillow refuses the file)."""
    try:
        slow: np.ndarray | None = decode_pixels(data, "x", spec, 1_000_000)
    except ApiError:
        slow = None
    return fast_png(data, spec, 1_000_000), slow


@pytest.mark.parametrize("spec", [GREY, RGB], ids=["L", "RGB"])
def test_fast_path_takes_ready_pngs_and_matches_pillow(spec: InputSpec) -> None:
    for seed in range(5):
        image = noise_image(seed, (spec.width, spec.height), spec.color)
        for options in ({}, {"optimize": True}, {"compress_level": 0}, {"interlace": 1}):
            buffer = io.BytesIO()
            image.save(buffer, "PNG", **options)
            fast, slow = _both(buffer.getvalue(), spec)
            assert fast is not None and slow is not None
            np.testing.assert_array_equal(fast, slow)
            assert fast.dtype == np.uint8 and fast.shape == (spec.height, spec.width, spec.channels)


def test_fast_path_steps_aside_for_anything_to_convert() -> None:
    grey = noise_image(1, (28, 28), "L")
    steps_aside = {
        "other size": image_bytes(noise_image(1, (27, 28), "L")),
        "other mode": image_bytes(noise_image(1, (28, 28), "RGB")),
        "16-bit": image_bytes(Image.fromarray(np.full((28, 28), 300, dtype=np.uint16))),
        "transparency": _with_info(grey, transparency=0),
        "exif": _with_info(grey, exif=_rotated_exif()),
        "jpeg": image_bytes(grey, "JPEG"),
        "bad crc": _flip(image_bytes(grey), 20),
        "truncated": image_bytes(grey)[:-20],
    }
    for name, data in steps_aside.items():
        assert fast_png(data, GREY, 1_000_000) is None, name
    assert fast_png(image_bytes(grey), GREY, max_pixels=28 * 28 - 1) is None  # the limit holds


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_pngs_get_pillows_verdict(data: st.DataObject) -> None:
    """Flipped, dropped and inserted bytes, as on a bad line: the fast path decodes only what
    Pillow decodes, to the same pixels."""
    png = bytearray(image_bytes(noise_image(3, (28, 28), "L")))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(png) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            png[at] ^= data.draw(st.integers(1, 255))
        elif action == "drop":
            del png[at]
        else:
            png.insert(at, data.draw(st.integers(0, 255)))
    fast, slow = _both(bytes(png), GREY)
    if fast is not None:
        assert slow is not None
        np.testing.assert_array_equal(fast, slow)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_crafted_pngs_with_right_crcs_decode_safely(data: st.DataObject) -> None:
    """Damage behind recomputed CRCs reaches the decoders themselves. Where Pillow decodes,
    the pixels are the same; libspng alone may decode a stream whose zlib checksum is wrong
    (see `fast_png`), always to an image of the model's shape."""
    png = bytearray(image_bytes(noise_image(3, (28, 28), "L")))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(33, len(png) - 13))  # the IDAT chunk's data
        png[at] ^= data.draw(st.integers(1, 255))
    fast, slow = _both(bytes(_fix_crcs(png)), GREY)
    if fast is not None:
        assert fast.shape == (28, 28, 1) and fast.dtype == np.uint8
        if slow is not None:
            np.testing.assert_array_equal(fast, slow)


def _fix_crcs(png: bytearray) -> bytearray:
    """Recomputes the CRC of every chunk whose length still fits in the file."""
    pos = 8
    while pos + 12 <= len(png):
        length = int.from_bytes(png[pos : pos + 4])
        end = pos + 12 + length
        if end > len(png):
            break
        png[end - 4 : end] = zlib.crc32(png[pos + 4 : end - 4]).to_bytes(4)
        pos = end
    return png


def test_batches_of_fast_and_slow_images_equal_single_decodes() -> None:
    uploads = [image_bytes(noise_image(i, (28, 28), "L")) for i in range(3)]
    uploads.append(image_bytes(noise_image(9, (40, 30), "RGB"), "JPEG"))
    pixels = [fast_png(d, GREY, 10**6) for d in uploads[:3]]
    pixels.append(decode_pixels(uploads[3], "x", GREY, 10**6))
    batch = to_input([p for p in pixels if p is not None])
    singles = np.stack([decode_image(d, "x", GREY, 10**6) for d in uploads])
    np.testing.assert_array_equal(batch, singles)


def _with_info(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def _rotated_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0xFF
    return bytes(changed)
