"""Time per image of the service's decoding (`service.decoding.decode_pixels`) under each decode
policy (and the rejected margin of 1), one thread, and how far the reduced pixels are from the
full ones; and, for PNG and WebP, what reducing after the decode (`Image.reduce`) would save."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from bench.decode.photos import SIZES, TIMED, covering, package_photo
from modelfile import imaging
from modelfile.imaging import Color, to_model_array
from modelfile.metadata import DecodePolicy, InputSpec
from service.decoding import decode_pixels

MAX_PIXELS = 40_000_000
# (JPEG's mode, the model's colour): grey photographs, colour ones for a grey model (the
# issue's case), colour ones for a colour model.
JPEG_CASES: tuple[tuple[str, Color], ...] = (("L", "L"), ("RGB", "L"), ("RGB", "RGB"))
# What is compared: the decode policy and the DCT-scaling margin (`imaging.DRAFT_MARGIN`, 2 in
# the product); "reduced_1x" decodes straight to the model's input size, the margin rejected.
ARMS: dict[str, tuple[DecodePolicy, int]] = {
    "full": ("full", imaging.DRAFT_MARGIN),
    "reduced": ("reduced", imaging.DRAFT_MARGIN),
    "reduced_1x": ("reduced", 1),
}


@contextlib.contextmanager
def draft_margin(margin: int) -> Iterator[None]:
    """`modelfile.imaging.DRAFT_MARGIN` set to `margin` for the block (this process only)."""
    kept = imaging.DRAFT_MARGIN
    imaging.DRAFT_MARGIN = margin
    try:
        yield
    finally:
        imaging.DRAFT_MARGIN = kept


def per_image_ms(decode: Callable[[bytes], object], images: list[bytes], repeats: int) -> float:
    """Milliseconds per image: the best of `repeats` passes over `images` (one warm-up)."""
    for data in images:
        decode(data)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for data in images:
            decode(data)
        best = min(best, (time.perf_counter() - started) / len(images))
    return best * 1e3


def _gap(a: list[np.ndarray], b: list[np.ndarray]) -> dict[str, float]:
    diff = np.abs(np.stack(a).astype(np.int16) - np.stack(b))
    return {"mean_abs": round(float(diff.mean()), 3), "max_abs": int(diff.max())}


def jpeg_rows(input_size: int, repeats: dict[str, int]) -> list[dict[str, Any]]:
    """Full and reduced decoding of each size and JPEG case, for an `input_size` model."""
    rows = []
    for size, (width, height) in SIZES.items():
        photos = [covering(package_photo(n).convert("RGB"), (width, height)) for n in TIMED]
        for mode, color in JPEG_CASES:
            images = [_encoded(p.convert(mode), "JPEG", quality=90) for p in photos]
            spec = InputSpec(
                channels=1 if color == "L" else 3, height=input_size, width=input_size, color=color
            )
            row: dict[str, Any] = {"size": size, "pixels": f"{width}x{height}", "jpeg": mode}
            row["model"] = f"{color} {input_size}x{input_size}"
            row["mean_kib"] = round(sum(map(len, images)) / len(images) / 1024, 1)
            pixels = {}
            for arm, (policy, margin) in ARMS.items():
                decode = partial(
                    decode_pixels, what="photo", spec=spec, max_pixels=MAX_PIXELS, policy=policy
                )
                with draft_margin(margin):
                    row[f"{arm}_ms"] = round(per_image_ms(decode, images, repeats[size]), 3)
                    pixels[arm] = [decode(d) for d in images]
            for arm in ("reduced", "reduced_1x"):
                row[f"{arm}_speed_up"] = round(row["full_ms"] / row[f"{arm}_ms"], 2)
                row[f"{arm}_pixel_gap"] = _gap(pixels[arm], pixels["full"])
            rows.append(row)
    return rows


def _encoded(img: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def _reduce_then_model(data: bytes, color: Color, size: int, margin: int) -> np.ndarray:
    """The alternative measured for PNG and WebP: the largest whole-factor `Image.reduce`
    still at least `margin` times `size`, between the full decode and the shared policy."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        factor = min(img.width // (size * margin), img.height // (size * margin))
        reduced = img.reduce(factor) if factor > 1 else img
        return to_model_array(reduced, color, size, size)


def lossless_rows(input_size: int, repeats: dict[str, int]) -> list[dict[str, Any]]:
    """PNG and WebP (RGB, RGB model): the full decode (what both policies do) against
    decode-then-reduce, to at least twice and at least once the input."""
    spec = InputSpec(channels=3, height=input_size, width=input_size, color="RGB")
    rows = []
    for size, (width, height) in SIZES.items():
        photos = [covering(package_photo(n).convert("RGB"), (width, height)) for n in TIMED[:2]]
        for fmt, options in (("PNG", {}), ("WEBP", {"quality": 90})):
            images = [_encoded(p, fmt, **options) for p in photos]
            decode = partial(
                decode_pixels, what="photo", spec=spec, max_pixels=MAX_PIXELS, policy="full"
            )
            full = [decode(d) for d in images]
            row: dict[str, Any] = {
                "size": size,
                "format": fmt,
                "model": f"RGB {input_size}x{input_size}",
            }
            row["full_ms"] = round(per_image_ms(decode, images, repeats[size]), 3)
            for margin in (2, 1):
                alternative = partial(
                    _reduce_then_model, color="RGB", size=input_size, margin=margin
                )
                row[f"reduce_{margin}x_ms"] = round(
                    per_image_ms(alternative, images, repeats[size]), 3
                )
                row[f"reduce_{margin}x_pixel_gap"] = _gap([alternative(d) for d in images], full)
            rows.append(row)
    return rows
