"""Fashion-MNIST test images (Debian's dataset-fashion-mnist) and shifted versions of them,
for the drift tests: brightened, blurred, or of another class than the model's normal one."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SHIPPED = Path(__file__).resolve().parents[2] / "models"
TROUSER, DRESS = 1, 3
SHIFTS = ("brightened", "blurred", "other class")


def available() -> bool:
    return (FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists()


def test_images(label: int) -> np.ndarray:
    """The uint8 (N, 28, 28) test images of one class, in file order."""
    with gzip.open(FASHION_DIR / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_DIR / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images[labels == label]


def shifted(images: np.ndarray, shift: str) -> np.ndarray:
    """The images as a changed camera or supplier would give them."""
    # Overexposed until most of the garment saturates: the models' global contrast
    # normalisation takes out milder brightening (+120, or twice the light) almost entirely.
    if shift == "brightened":
        return np.clip(images.astype(np.int16) + 230, 0, 255).astype(np.uint8)
    if shift == "blurred":
        blur = ImageFilter.GaussianBlur(1.5)
        return np.stack([np.asarray(Image.fromarray(i).filter(blur)) for i in images])
    if shift == "other class":
        return test_images(DRESS)[: len(images)]
    raise ValueError(f"unknown shift {shift!r}")


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image, "L").save(out, format="PNG")
    return out.getvalue()


def shipped_repo(models_dir: Path, name: str = "fashion-mnist-trouser") -> str:
    """A repository holding a copy of one shipped model (its drift reference included)."""
    shutil.copytree(SHIPPED / name, models_dir / name)
    return name
