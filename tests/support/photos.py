"""Real photographs for pixel tests: those scikit-image's wheel ships, cropped small and saved
in the modes and EXIF orientations that cameras and editors write."""

from __future__ import annotations

import io
from importlib.resources import as_file, files

import numpy as np
from PIL import Image

from modelfile.imaging import ORIENTATION_TAG

PHOTOS = ("astronaut.png", "coffee.png", "rocket.jpg")
ORIENTATIONS = range(1, 9)


def photograph(name: str, size: tuple[int, int] = (160, 112)) -> Image.Image:
    """The package photograph `name`, RGB, scaled down to cover `size` and centre-cropped."""
    with as_file(files("skimage") / "data" / name) as path, Image.open(path) as img:
        rgb = img.convert("RGB")
    scale = max(size[0] / rgb.width, size[1] / rgb.height)
    scaled = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)))
    left, top = (scaled.width - size[0]) // 2, (scaled.height - size[1]) // 2
    return scaled.crop((left, top, left + size[0], top + size[1]))


def encoded(img: Image.Image, fmt: str, orientation: int = 1, **options: object) -> bytes:
    """`img` saved as `fmt` with an EXIF orientation tag (none for 1)."""
    if orientation != 1:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        options["exif"] = exif.tobytes()
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def _with_alpha(rgb: Image.Image) -> Image.Image:
    rgba = rgb.convert("RGBA")
    ramp = np.linspace(0, 255, rgb.width, dtype=np.uint8)
    rgba.putalpha(Image.fromarray(np.tile(ramp, (rgb.height, 1))))
    return rgba


def _sixteen_bit(rgb: Image.Image) -> Image.Image:
    grey = np.asarray(rgb.convert("L"), dtype=np.uint16)
    return Image.fromarray(grey * 256 + 3)  # I;16, never the full 0..65535 range


def variants(rgb: Image.Image, orientation: int) -> dict[str, bytes]:
    """The photograph `rgb` as file name -> bytes, in every mode the tests cover."""
    grey = rgb.convert("L")
    return {
        "rgb.jpg": encoded(rgb, "JPEG", orientation, quality=90),
        "grey.jpg": encoded(grey, "JPEG", orientation, quality=90),
        "cmyk.jpg": encoded(rgb.convert("CMYK"), "JPEG", orientation, quality=90),
        "progressive.jpg": encoded(rgb, "JPEG", orientation, progressive=True),
        "grey.png": encoded(grey, "PNG", orientation),
        "alpha.png": encoded(_with_alpha(rgb), "PNG", orientation),
        "sixteen.png": encoded(_sixteen_bit(rgb), "PNG", orientation),
        "rgb.webp": encoded(rgb, "WEBP", orientation, quality=90),
    }


def photo_files() -> dict[str, dict[str, bytes]]:
    """Photograph name (no suffix) -> {file name: bytes}: every variant in every orientation."""
    out = {}
    for name in PHOTOS:
        rgb = photograph(name)
        out[name.split(".")[0]] = {
            f"o{o}-{kind}": data for o in ORIENTATIONS for kind, data in variants(rgb, o).items()
        }
    return out
