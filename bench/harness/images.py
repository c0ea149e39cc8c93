"""Noise images for the mixed traffic and the tests: grey or colour, as PNG bytes or parts."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def image_bytes(image: Image.Image, fmt: str = "PNG", **save_args: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save_args)
    return out.getvalue()


def noise_image(seed: int, size: tuple[int, int] = (28, 28), mode: str = "L") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = len(mode) if mode != "L" else 1
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    if channels == 1:
        return Image.fromarray(pixels[:, :, 0])
    return Image.fromarray(pixels, mode=mode)


def png(seed: int, size: tuple[int, int] = (28, 28)) -> bytes:
    return image_bytes(noise_image(seed, size))


def files(*seeds: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart `files` parts for httpx: one grey 28 x 28 noise PNG per seed."""
    return [("files", (f"{s}.png", png(s), "image/png")) for s in seeds]
