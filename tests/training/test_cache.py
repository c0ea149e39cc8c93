"""The memory-mapped folder cache: decoded once, reopened without decoding, rebuilt when a file
changes, built once when two builders race; and per-batch preprocessing of uint8 rows."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.images import noise_image
from training import preprocess
from training.batches import Uint8Images
from training.data import load_dataset
from training.data.cache import cached_images
from training.data.images import read_image
from training.data.rows import Rows


def write_folder(root: Path, per_class: int = 6) -> list[Path]:
    paths = []
    for k, name in enumerate(("a", "b")):
        (root / "train" / name).mkdir(parents=True)
        for i in range(per_class):
            path = root / "train" / name / f"{i}.png"
            noise_image(100 * k + i, (20, 20), "RGB").save(path)
            paths.append(path)
    return paths


class CountingDecoder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, path: Path) -> np.ndarray:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        return read_image(path, "RGB", 16)


def test_a_second_open_does_not_decode(tmp_path: Path) -> None:
    paths = write_folder(tmp_path / "data")
    first, second = CountingDecoder(), CountingDecoder()
    built = cached_images(tmp_path / "cache", paths, 16, 3, first)
    reopened = cached_images(tmp_path / "cache", paths, 16, 3, second)
    assert (first.calls, second.calls) == (len(paths), 0)
    assert isinstance(reopened, np.memmap) and not reopened.flags.writeable
    expected = np.stack([read_image(p, "RGB", 16) for p in paths])
    assert np.array_equal(built, expected) and np.array_equal(reopened, expected)


def test_a_changed_file_size_or_decode_policy_makes_a_new_entry(tmp_path: Path) -> None:
    paths = write_folder(tmp_path / "data")
    cached_images(tmp_path / "cache", paths, 16, 3, CountingDecoder())
    noise_image(999, (20, 20), "RGB").save(paths[3])
    os.utime(paths[3], ns=(1, 1))  # a new mtime even on a coarse clock
    again = CountingDecoder()
    images = cached_images(tmp_path / "cache", paths, 16, 3, again)
    assert again.calls == len(paths)
    assert np.array_equal(images[3], read_image(paths[3], "RGB", 16))
    other_size = CountingDecoder()
    cached_images(tmp_path / "cache", paths, 8, 3, lambda p: other_size(p)[:8, :8])
    assert other_size.calls == len(paths)
    other_policy = CountingDecoder()
    cached_images(tmp_path / "cache", paths, 8, 3, lambda p: other_policy(p)[:8, :8], "reduced")
    assert other_policy.calls == len(paths)
    assert len(list((tmp_path / "cache").glob("images-*.npy"))) == 4
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_two_builders_at_once_decode_once(tmp_path: Path) -> None:
    paths = write_folder(tmp_path / "data")
    decoder = CountingDecoder(delay=0.01)
    results: list[np.ndarray] = []

    def build() -> None:
        results.append(cached_images(tmp_path / "cache", paths, 16, 3, decoder))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2 and decoder.calls == len(paths)
    assert np.array_equal(results[0], results[1])


def test_folder_with_cache_reads_the_same_images_lazily(tmp_path: Path) -> None:
    write_folder(tmp_path / "data")
    plain = load_dataset("folder", tmp_path / "data", image_size=16, channels=3, seed=1)
    cached = load_dataset(
        "folder", tmp_path / "data", image_size=16, channels=3, seed=1, cache_dir=tmp_path / "c"
    )
    assert isinstance(cached.x_train, Rows)  # no test/ folder: a held-out subset, still unread
    assert np.array_equal(np.asarray(cached.x_train), plain.x_train)
    assert np.array_equal(np.asarray(cached.x_test), np.asarray(plain.x_test))
    assert np.array_equal(cached.y_train, plain.y_train)


def test_cache_dir_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    from training.data import DataError

    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="cache-dir"):
        cached_images(tmp_path / "file" / "cache", [], 16, 3, CountingDecoder())


def test_per_batch_preprocessing_matches_the_whole_array(fashion_subset: Path) -> None:
    images = np.load(fashion_subset)["x_train"][:300, :, :, None]
    pre = preprocess.fit_preprocess(images)
    whole = preprocess.apply(pre, images)
    rows = torch.tensor([5, 299, 0, 17])
    batch, back = Uint8Images(images, pre, "cpu")[rows]
    assert torch.equal(back, rows)
    assert torch.allclose(batch, whole[rows], atol=1e-6, rtol=0)


def test_released_pages_read_back_the_same(tmp_path: Path) -> None:
    from training.data.rows import every, release_pages, select

    paths = write_folder(tmp_path / "data")
    images = cached_images(tmp_path / "cache", paths, 16, 3, CountingDecoder())
    rows = select(images, np.arange(len(paths)) % 2 == 0)
    before = np.asarray(rows)
    release_pages(rows)
    assert np.array_equal(np.asarray(rows), before)
    assert np.array_equal(np.asarray(every(rows, 1, 2)), before[1::2])
