"""The experiment's photographs: scikit-image's package photographs, scaled up to camera sizes
for the timings (the serving benchmark uses real 12 MP camera photographs, from Debian's
lomiri-wallpapers-16.04) and cut into JPEG crops for the detection folder."""

from __future__ import annotations

import io
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
from PIL import Image

TIMED = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")
SIZES = {"1 MP": (1152, 864), "12 MP": (4032, 3024)}  # 4:3, as cameras take them
NORMALS = ("brick.png", "camera.png", "coffee.png")  # the normal classes, in turn
OTHERS = ("grass.png", "gravel.png", "astronaut.png", "chelsea.png")  # anomalies only
CROP = 256  # pixels on a side: a 32-pixel model's JPEGs decode at 1/8 when reduced


def package_photo(name: str) -> Image.Image:
    with as_file(files("skimage") / "data" / name) as path, Image.open(path) as img:
        img.load()
        return img.copy()


def covering(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img` scaled (Lanczos) to cover `size`, then centre-cropped to it."""
    scale = max(size[0] / img.width, size[1] / img.height)
    scaled = img.resize(
        (round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS
    )
    left, top = (scaled.width - size[0]) // 2, (scaled.height - size[1]) // 2
    return scaled.crop((left, top, left + size[0], top + size[1]))


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def timed_jpegs(size: str, mode: str) -> list[bytes]:
    """The timed photographs at `size` (a key of SIZES) in `mode` (L or RGB), as JPEGs."""
    return [
        jpeg(covering(package_photo(n).convert("RGB"), SIZES[size]).convert(mode)) for n in TIMED
    ]


def _crops(img: Image.Image, count: int, rng: np.random.Generator) -> list[Image.Image]:
    """`count` CROP x CROP crops at random places of `img` scaled by 1.5 (Lanczos)."""
    big = img.resize((img.width * 3 // 2, img.height * 3 // 2), Image.Resampling.LANCZOS)
    out = []
    for _ in range(count):
        x = int(rng.integers(0, big.width - CROP + 1))
        y = int(rng.integers(0, big.height - CROP + 1))
        out.append(big.crop((x, y, x + CROP, y + CROP)))
    return out


def write_folder(root: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, int]:
    """root/train/<normal class>/ and root/test/<every class>/ of JPEG crops, grey or colour
    as the photograph is. Returns the files per folder."""
    rng = np.random.default_rng(seed)
    counts = {}
    for name in NORMALS + OTHERS:
        cls = name.split(".")[0]
        photo = package_photo(name)
        photo = photo.convert("L" if photo.mode == "L" else "RGB")
        splits = {"test": n_test, **({"train": n_train} if name in NORMALS else {})}
        for split, count in splits.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i, crop in enumerate(_crops(photo, count, rng)):
                (folder / f"{i:04d}.jpg").write_bytes(jpeg(crop))
            counts[f"{split}/{cls}"] = count
    return counts
