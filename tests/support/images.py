"""Images for the tests: noise in any mode and format, the awkward valid ones, the hostile ones."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

from bench.harness.images import files, image_bytes, noise_image, png

__all__ = [
    "animated_gif",
    "broken_images",
    "exif_rotated_jpeg",
    "files",
    "image_bytes",
    "multipage_tiff",
    "noise_image",
    "odd_images",
    "png",
    "png_declaring",
]


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` 8-bit grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [noise_image(40 + i, (28, 28), "L").convert("P") for i in range(3)]
    return image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


def multipage_tiff() -> bytes:
    pages = [noise_image(50 + i, (30, 30), "RGB") for i in range(3)]
    return image_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return image_bytes(noise_image(60, (40, 20), "RGB"), "JPEG", exif=exif.tobytes())


def odd_images() -> dict[str, tuple[bytes, str]]:
    """Valid images in every accepted format and the awkward modes: name -> (bytes, type)."""
    grey16 = Image.fromarray(np.random.default_rng(7).integers(0, 65535, (28, 28), dtype=np.uint16))
    palette = noise_image(8, (28, 28), "RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    floats = Image.fromarray(np.random.default_rng(9).normal(0, 3, (28, 28)).astype(np.float32))
    return {
        "grey16.png": (image_bytes(grey16, "PNG"), "image/png"),
        "palette.png": (image_bytes(palette, "PNG", transparency=0), "image/png"),
        "cmyk.jpg": (
            image_bytes(noise_image(10, (28, 28), "RGB").convert("CMYK"), "JPEG"),
            "image/jpeg",
        ),
        "la.png": (image_bytes(noise_image(11, (28, 28), "LA"), "PNG"), "image/png"),
        "rgba.webp": (image_bytes(noise_image(12, (28, 28), "RGBA"), "WEBP"), "image/webp"),
        "onebit.bmp": (
            image_bytes(noise_image(13, (28, 28), "L").convert("1"), "BMP"),
            "image/bmp",
        ),
        "float.tiff": (image_bytes(floats, "TIFF"), "image/tiff"),
        "rgb.ppm": (
            image_bytes(noise_image(14, (28, 28), "RGB"), "PPM"),
            "image/x-portable-pixmap",
        ),
        "animated.gif": (animated_gif(), "image/gif"),
        "pages.tiff": (multipage_tiff(), "image/tiff"),
        "rotated.jpg": (exif_rotated_jpeg(), "image/jpeg"),
        "big.png": (image_bytes(noise_image(15, (300, 200), "RGB"), "PNG"), "image/png"),
    }


def broken_images() -> dict[str, tuple[bytes, str, int]]:
    """Hostile uploads: name -> (bytes, content type, the status they must get)."""
    png = image_bytes(noise_image(20, (64, 64), "RGB"), "PNG")
    jpeg = image_bytes(noise_image(21, (64, 64), "RGB"), "JPEG")
    bad_crc = bytearray(png)
    bad_crc[30] ^= 0xFF
    rng = np.random.default_rng(22)
    return {
        "truncated.png": (png[: len(png) // 2], "image/png", 400),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "image/jpeg", 400),
        "header-only.png": (png[:40], "image/png", 400),
        "bad-crc.png": (bytes(bad_crc), "image/png", 400),
        "random.bin": (rng.bytes(5000), "application/octet-stream", 400),
        "random.png": (rng.bytes(5000), "image/png", 400),
        "html.png": (b"<html><body>not an image</body></html>", "image/png", 400),
        "svg.png": (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/png", 400),
        "zero-width.png": (png_declaring(0, 10), "image/png", 400),
        "bomb.png": (png_declaring(100_000, 100_000), "image/png", 413),
        "big-header.png": (png_declaring(8_000, 8_000), "image/png", 413),
        "text.txt": (b"hello", "text/plain", 415),
        "json.json": (b"{}", "application/json", 415),
        "vector.svg": (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml", 415),
        "empty.png": (b"", "image/png", 400),
    }
