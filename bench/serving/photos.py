"""The photographs of bench/serving's photograph mode: Debian's lomiri-wallpapers-16.04, real
camera photographs of 4.5 to 15.9 megapixels, re-encoded as phone-like JPEGs of a set size.

Each set is every photograph with at least the set's pixel count, scaled down (Lanczos) to
that count with its aspect ratio kept, converted to the set's colour mode and saved as a
baseline JPEG of quality 90 (the package ships progressive ones, which phones do not make).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

PACKAGE = "lomiri-wallpapers-16.04"
PHOTO_DIR = Path("/usr/share/backgrounds")
# The package's photographs; its two other images (analogpattern, umang) are not photographs.
PHOTOGRAPHS = (
    "Bridge_by_Sander_Klootwijk.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg",
    "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg",
    "free_by_Peter_Nerlich.jpg",
    "friends_by_Aitzol_Berasategi.jpg",
    "greentock_by_Peter_Nerlich.jpg",
    "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
)
QUALITY = 90
COLORS = {"L": "grey", "RGB": "RGB"}


@dataclass(frozen=True)
class PhotoSet:
    """JPEG photographs of about `megapixels` in colour mode `color` ("L" or "RGB")."""

    megapixels: float
    color: str
    names: tuple[str, ...]
    jpegs: tuple[bytes, ...]
    sizes: tuple[tuple[int, int], ...]

    @property
    def label(self) -> str:
        return f"{self.megapixels:g} MP {COLORS[self.color]}"

    @property
    def mean_bytes(self) -> float:
        return sum(len(j) for j in self.jpegs) / len(self.jpegs)


def _source(name: str) -> Path:
    path = PHOTO_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: install Debian's {PACKAGE} (make install)")
    return path


def scaled_size(size: tuple[int, int], megapixels: float) -> tuple[int, int]:
    """`size` scaled to `megapixels` million pixels, aspect ratio kept."""
    factor = math.sqrt(megapixels * 1e6 / (size[0] * size[1]))
    return round(size[0] * factor), round(size[1] * factor)


def jpeg_of(path: Path, megapixels: float, color: str) -> tuple[bytes, tuple[int, int]]:
    """The photograph at `path` scaled down to `megapixels`, as a baseline JPEG in `color`."""
    with Image.open(path) as img:
        size = scaled_size(img.size, megapixels)
        scaled = img.convert("RGB").resize(size, Image.Resampling.LANCZOS).convert(color)
    out = io.BytesIO()
    scaled.save(out, format="JPEG", quality=QUALITY)
    return out.getvalue(), size


def photo_set(megapixels: float, color: str) -> PhotoSet:
    """Every photograph of at least `megapixels`, as JPEGs of that size in `color`."""
    if color not in COLORS:
        raise ValueError(f"colour {color!r} is not one of {', '.join(COLORS)}")
    names, jpegs, sizes = [], [], []
    for name in PHOTOGRAPHS:
        path = _source(name)
        with Image.open(path) as img:
            pixels = img.size[0] * img.size[1]
        if pixels < megapixels * 1e6:
            continue
        data, size = jpeg_of(path, megapixels, color)
        names.append(name)
        jpegs.append(data)
        sizes.append(size)
    if not names:
        raise ValueError(f"no photograph in {PACKAGE} has {megapixels:g} megapixels")
    return PhotoSet(megapixels, color, tuple(names), tuple(jpegs), tuple(sizes))
