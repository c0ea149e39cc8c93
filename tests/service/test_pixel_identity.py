"""Training and serving see the same pixels: a folder of photographs, in every EXIF orientation
and file mode, decoded by training's folder loader and by the service's decoding pool, under
both decode policies, gives identical uint8 arrays."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelfile.imaging import Color, to_model_array
from modelfile.metadata import DecodePolicy, InputSpec
from service.decode_pool import DecodePool
from service.uploads import Upload
from tests.support.photos import photo_files
from training.data import load_dataset

SIZE = 24  # the photographs are 160 x 112: JPEGs decode at 1/4 under "reduced"
SPECS = {
    "L": InputSpec(channels=1, height=SIZE, width=SIZE, color="L"),
    "RGB": InputSpec(channels=3, height=SIZE, width=SIZE, color="RGB"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    """train/<photograph>/<file> for every variant, one test image per class so that nothing
    is held out; and the training files' bytes in the loader's order."""
    root = tmp_path_factory.mktemp("photos")
    ordered = []
    for photo, named in sorted(photo_files().items()):
        (root / "train" / photo).mkdir(parents=True)
        (root / "test" / photo).mkdir(parents=True)
        for name, data in sorted(named.items()):
            (root / "train" / photo / name).write_bytes(data)
            ordered.append(data)
        (root / "test" / photo / "one.png").write_bytes(named["o1-grey.png"])
    return root, ordered


def served(files: list[bytes], spec: InputSpec, policy: DecodePolicy) -> np.ndarray:
    """uint8 `(N, H, W, C)` of the service's decoding pool for these uploads."""
    pool = DecodePool(max_pixels=10**6)
    try:
        uploads = [Upload(i, f"{i}", data) for i, data in enumerate(files)]
        decoded = asyncio.run(pool.decode(uploads, spec, policy))
    finally:
        pool.close()
    assert not decoded.errors
    return np.rint(decoded.images * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("policy", ["full", "reduced"])
@pytest.mark.parametrize("color", ["L", "RGB"])
def test_training_and_serving_decode_photographs_alike(
    folder: tuple[Path, list[bytes]], color: Color, policy: DecodePolicy, tmp_path: Path
) -> None:
    root, files = folder
    spec = SPECS[color]
    data = load_dataset("folder", root, image_size=SIZE, channels=spec.channels, decode=policy)
    assert not data.skipped and len(data.x_train) == len(files) == 3 * 8 * 8
    serving = served(files, spec, policy)
    np.testing.assert_array_equal(np.asarray(data.x_train), serving)
    cached = load_dataset(
        "folder",
        root,
        image_size=SIZE,
        channels=spec.channels,
        decode=policy,
        cache_dir=tmp_path / "cache",
    )
    np.testing.assert_array_equal(np.asarray(cached.x_train), serving)


@pytest.mark.parametrize("color", ["L", "RGB"])
def test_full_is_todays_decode_and_reduced_changes_only_jpegs(
    folder: tuple[Path, list[bytes]], color: Color
) -> None:
    _, files = folder
    spec = SPECS[color]
    today = np.stack([to_model_array(Image.open(io.BytesIO(d)), color, SIZE, SIZE) for d in files])
    np.testing.assert_array_equal(served(files, spec, "full"), today)
    reduced = served(files, spec, "reduced")
    jpeg = np.array([d[:3] == b"\xff\xd8\xff" for d in files])
    np.testing.assert_array_equal(reduced[~jpeg], today[~jpeg])
    changed = (reduced != today).reshape(len(files), -1).any(axis=1)
    assert changed[jpeg].all()  # DCT scaling gives other (close) pixels
    gap = np.abs(reduced[jpeg].astype(int) - today[jpeg]).mean()
    assert gap < 4.0, gap
