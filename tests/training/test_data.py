"""Dataset loaders, each read from a small fixture written in its real on-disk format."""

from __future__ import annotations

import csv
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelfile.imaging import to_model_array
from training.data import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    DataError,
    ImageSet,
    default_data_dir,
    load_dataset,
    registry,
    resolve_class,
)
from training.data.download import download_missing

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# --- Writers for the real formats -----------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000080<ndim>, big-endian dims, then the data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(root: Path, n_train: int = 30, n_test: int = 20, gz: bool = True) -> None:
    """MNIST-style files: every class present, pixel (0, 0) of each image holds its index."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        x[:, 0, 0] = np.arange(n)
        y = np.arange(n, dtype=np.uint8) % 10
        for kind, array in (("images-idx3", x), ("labels-idx1", y)):
            raw = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (root / name).write_bytes(raw)


def cifar_batch(n: int, seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"fixture batch",
        b"labels": [int(v) for v in np.arange(n) % 10],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def cifar_pickle(batch: object, protocol: int = 2) -> bytes:
    """Pickles as the Python 2 era files do: protocol 2 and numpy.core's module names."""
    raw = pickle.dumps(batch, protocol=protocol)
    return raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar(root: Path, n: int = 20, protocol: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(cifar_pickle(cifar_batch(n, i), protocol))
    (folder / "test_batch").write_bytes(cifar_pickle(cifar_batch(n, 9), protocol))
    meta = {b"label_names": [name.encode() for name in CIFAR10_CLASSES]}
    (folder / "batches.meta").write_bytes(cifar_pickle(meta, protocol))
    return folder


def solid(
    color: tuple[int, ...] | int, mode: str = "RGB", size: tuple[int, int] = (12, 10)
) -> Image.Image:
    return Image.new(mode, size, color)


# --- MNIST and Fashion-MNIST ------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    write_idx_set(tmp_path, gz=gz)
    mnist = load_dataset("mnist", tmp_path)
    assert mnist.x_train.shape == (30, 28, 28, 1) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test is not None and mnist.x_test.shape == (20, 28, 28, 1)
    assert mnist.y_train.dtype == np.int64
    assert list(mnist.y_train[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert list(mnist.x_train[:5, 0, 0, 0]) == [0, 1, 2, 3, 4]
    assert mnist.class_names == [str(d) for d in range(10)]
    assert mnist.color == "L"


def test_fashion_mnist_names_its_classes(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    fashion = load_dataset("fashion-mnist", tmp_path)
    assert fashion.class_names[1] == "trouser" and fashion.class_names[9] == "ankle-boot"
    assert resolve_class(fashion, "trouser") == 1
    assert resolve_class(fashion, "Ankle-Boot") == 9


def test_idx_adapts_size_and_colour_through_the_image_policy(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    plain = load_dataset("mnist", tmp_path)
    adapted = load_dataset("mnist", tmp_path, image_size=32, channels=3)
    assert adapted.x_train.shape == (30, 32, 32, 3) and adapted.color == "RGB"
    expected = to_model_array(Image.fromarray(plain.x_train[3, :, :, 0]), "RGB", 32, 32)
    np.testing.assert_array_equal(adapted.x_train[3], expected)
    rgb = load_dataset("mnist", tmp_path, channels=3)
    np.testing.assert_array_equal(rgb.x_train[:, :, :, 2], plain.x_train[:, :, :, 0])


def test_idx_truncated_file_is_named(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", tmp_path)


def test_idx_cut_gzip_stream_is_named(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_dataset("mnist", tmp_path)


def test_idx_bad_magic_is_named(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + path.read_bytes()[4:])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: bad magic number"):
        load_dataset("mnist", tmp_path)


def test_idx_count_mismatch_is_reported(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(29, np.uint8)))
    with pytest.raises(DataError, match=r"30 images but .* 29 labels"):
        load_dataset("mnist", tmp_path)


def test_idx_label_out_of_range_is_reported(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(20, 10, np.uint8)))
    with pytest.raises(DataError, match="label 10 is not one of the 10 classes"):
        load_dataset("mnist", tmp_path)


def test_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"--download.*--data-dir"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match=r"--download.*--data-dir"):
        load_dataset("cifar10", tmp_path)


def test_download_flag_fetches_absent_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_fetch(name: str, dest: Path) -> None:
        calls.append((name, dest))
        write_idx_set(dest)

    monkeypatch.setattr("training.data.download.fetch", fake_fetch)
    download_missing("mnist", tmp_path / "cache")
    mnist = load_dataset("mnist", tmp_path / "cache")
    assert calls == [("mnist", tmp_path / "cache")]
    assert len(mnist.x_train) == 30
    download_missing("mnist", tmp_path / "cache")
    assert len(calls) == 1  # present files are not fetched again


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_debian_fashion_mnist() -> None:
    fashion = load_dataset("fashion-mnist", DEBIAN_FASHION_MNIST)
    assert fashion.x_train.shape == (60000, 28, 28, 1)
    assert fashion.x_test is not None and fashion.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert fashion.y_test is not None and np.bincount(fashion.y_test).tolist() == [1000] * 10
    assert fashion.class_names == FASHION_MNIST_CLASSES
    assert 0 < np.asarray(fashion.x_train).mean() < 255


# --- Default locations --------------------------------------------------------------------------


def test_default_data_dir_prefers_the_system_fashion_mnist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "system"
    monkeypatch.setattr(registry, "SYSTEM_FASHION_MNIST_DIR", system)
    monkeypatch.setenv("DEEPSVDD_DATA_DIR", str(tmp_path / "cache"))
    assert default_data_dir("fashion-mnist") == tmp_path / "cache" / "fashion-mnist"
    write_idx_set(system)
    assert default_data_dir("fashion-mnist") == system
    assert default_data_dir("mnist") == tmp_path / "cache" / "mnist"


def test_default_data_dir_without_env_is_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPSVDD_DATA_DIR", raising=False)
    assert default_data_dir("cifar10") == Path.home() / ".cache" / "deepsvdd" / "data" / "cifar10"


# --- CIFAR-10 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_reads_pickle_batches(tmp_path: Path, protocol: int) -> None:
    folder = write_cifar(tmp_path, protocol=protocol)
    for where in (tmp_path, folder):
        cifar = load_dataset("cifar10", where)
        assert cifar.x_train.shape == (100, 32, 32, 3) and cifar.color == "RGB"
        assert cifar.x_test is not None and cifar.x_test.shape == (20, 32, 32, 3)
        assert cifar.class_names == CIFAR10_CLASSES
    row = cifar_batch(20, 1)[b"data"]
    assert isinstance(row, np.ndarray)
    # A row holds the red plane, then green, then blue, each 32x32 row-major.
    assert cifar.x_train[0, 0, 1].tolist() == [row[0, 1], row[0, 1025], row[0, 2049]]
    assert cifar.y_train[:11].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert resolve_class(cifar, "cat") == 3


def test_cifar10_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    # GLOBAL os.system, then call it with one argument: what a hostile batch would hold.
    evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    (folder / "data_batch_3").write_bytes(evil)
    with pytest.raises(DataError, match=r"data_batch_3.*refusing to load global os.system"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_rejects_a_batch_of_the_wrong_shape(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    batch = cifar_batch(4, 1)
    batch[b"data"] = np.zeros((4, 100), np.uint8)
    (folder / "test_batch").write_bytes(cifar_pickle(batch))
    with pytest.raises(DataError, match=r"test_batch: expected a dict"):
        load_dataset("cifar10", tmp_path)


# --- GTSRB --------------------------------------------------------------------------------------

GTSRB_HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]


def sign_image(colour: tuple[int, int, int]) -> Image.Image:
    """A 40x36 picture: red margin, the sign (ROI x 5..34, y 4..31) in `colour`, whose outer
    10% is a blue ring that the extra border crop removes."""
    img = Image.new("RGB", (40, 36), (255, 0, 0))
    img.paste((0, 0, 255), (5, 4, 35, 32))
    img.paste(colour, (8, 7, 32, 29))
    return img


def write_gtsrb_class(images: Path, class_id: int, n: int, colour: tuple[int, int, int]) -> None:
    folder = images / f"{class_id:05d}"
    folder.mkdir(parents=True)
    with (folder / f"GT-{class_id:05d}.csv").open("w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(GTSRB_HEADER)
        for i in range(n):
            name = f"00000_{i:05d}.ppm"
            sign_image(colour).save(folder / name)
            writer.writerow([name, 40, 36, 5, 4, 34, 31, class_id])


def write_gtsrb(root: Path) -> Path:
    images = root / "GTSRB" / "Final_Training" / "Images"
    write_gtsrb_class(images, 1, 5, (0, 255, 0))
    write_gtsrb_class(images, 14, 10, (255, 255, 255))
    return images


def test_gtsrb_crops_to_the_roi_less_a_border(tmp_path: Path) -> None:
    images = write_gtsrb(tmp_path)
    for where in (tmp_path, images):
        gtsrb = load_dataset("gtsrb", where)
        assert gtsrb.class_names == ["00001", "00014"] and gtsrb.color == "RGB"
        assert gtsrb.x_train.shape == (12, 32, 32, 3)  # 20% of 5 and of 10 held out
        assert gtsrb.x_test is not None and gtsrb.y_test is not None
        assert np.bincount(gtsrb.y_test).tolist() == [1, 2]
    green = gtsrb.x_train[gtsrb.y_train == 0]
    # Neither the red margin nor the blue ring survives the crop.
    assert (np.abs(green.astype(int) - [0, 255, 0]) <= 2).all()
    assert resolve_class(gtsrb, "14") == 1 and resolve_class(gtsrb, "00001") == 0


def test_gtsrb_uses_the_official_test_set_when_present(tmp_path: Path) -> None:
    write_gtsrb(tmp_path)
    test_images = tmp_path / "GTSRB" / "Final_Test" / "Images"
    test_images.mkdir(parents=True)
    with (test_images / "GT-final_test.csv").open("w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(GTSRB_HEADER)
        for i, class_id in enumerate([14, 1, 14, 7]):  # class 7 has no training folder
            sign_image((255, 255, 255)).save(test_images / f"{i:05d}.ppm")
            writer.writerow([f"{i:05d}.ppm", 40, 36, 5, 4, 34, 31, class_id])
    gtsrb = load_dataset("gtsrb", tmp_path, image_size=16, channels=1)
    assert gtsrb.x_train.shape == (15, 16, 16, 1) and gtsrb.color == "L"
    assert gtsrb.y_test is not None and gtsrb.y_test.tolist() == [1, 0, 1]


def test_gtsrb_missing_annotations_are_named(tmp_path: Path) -> None:
    images = write_gtsrb(tmp_path)
    (images / "00014" / "GT-00014.csv").unlink()
    with pytest.raises(DataError, match=r"GT-00014\.csv is missing"):
        load_dataset("gtsrb", tmp_path)


def test_gtsrb_absent_layout_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Final_Training/Images"):
        load_dataset("gtsrb", tmp_path)


# --- Folders of images --------------------------------------------------------------------------


def write_folder(root: Path, mode: str = "L") -> None:
    """train/<class> with five images per class in three formats (grey or colour)."""
    grey, colour = (60, 200), ((200, 30, 30), (30, 30, 200))
    for c, name in enumerate(["cats", "dogs"]):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        fill = grey[c] if mode == "L" else colour[c]
        for i, ext in enumerate(["png", "png", "jpg", "bmp", "png"]):
            solid(fill, mode).save(folder / f"{i}.{ext}")
        (folder / ".DS_Store").write_bytes(b"not an image")


def test_folder_of_grey_images_defaults_to_one_channel_28(tmp_path: Path) -> None:
    write_folder(tmp_path, "L")
    images = load_dataset("folder", tmp_path)
    assert images.class_names == ["cats", "dogs"] and images.color == "L"
    assert images.x_train.shape == (8, 28, 28, 1)  # one of five per class held out
    assert images.x_test is not None and images.x_test.shape == (2, 28, 28, 1)
    assert images.y_test is not None and sorted(images.y_test.tolist()) == [0, 1]
    assert abs(int(images.x_train[images.y_train == 1].mean()) - 200) <= 2
    assert resolve_class(images, "dogs") == 1


def test_folder_of_colour_images_defaults_to_rgb_32(tmp_path: Path) -> None:
    write_folder(tmp_path, "RGB")
    images = load_dataset("folder", tmp_path)
    assert images.color == "RGB" and images.x_train.shape == (8, 32, 32, 3)
    expected = to_model_array(solid((200, 30, 30)), "RGB", 32, 32)
    np.testing.assert_array_equal(images.x_train[0], expected)


def test_folder_overrides_size_and_channels(tmp_path: Path) -> None:
    write_folder(tmp_path, "RGB")
    images = load_dataset("folder", tmp_path, image_size=20, channels=1)
    assert images.color == "L" and images.x_train.shape == (8, 20, 20, 1)


def test_folder_holdout_is_seeded(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(20):
            solid(i * 10, "L").save(tmp_path / "train" / name / f"{i:02d}.png")
    first = load_dataset("folder", tmp_path, seed=1)
    again = load_dataset("folder", tmp_path, seed=1)
    other = load_dataset("folder", tmp_path, seed=2)
    assert first.x_test is not None and again.x_test is not None and other.x_test is not None
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)
    assert len(first.x_test) == 8 and len(first.x_train) == 32


def test_folder_reads_a_test_split_with_its_own_classes(tmp_path: Path) -> None:
    write_folder(tmp_path, "L")
    for name, fill in (("cats", 60), ("wolves", 120)):
        (tmp_path / "test" / name).mkdir(parents=True)
        solid(fill, "L").save(tmp_path / "test" / name / "t.png")
    images = load_dataset("folder", tmp_path)
    assert images.class_names == ["cats", "dogs", "wolves"]
    assert images.x_train.shape == (10, 28, 28, 1)
    assert images.y_test is not None and images.y_test.tolist() == [0, 2]
    with pytest.raises(DataError, match="'wolves' has no training images"):
        resolve_class(images, "wolves")


def test_folder_unreadable_image_is_skipped_and_named(tmp_path: Path) -> None:
    write_folder(tmp_path, "L")
    complete = load_dataset("folder", tmp_path)
    (tmp_path / "train" / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    images = load_dataset("folder", tmp_path)
    assert images.color == "L"  # the unreadable file does not decide the colour
    assert images.y_test is not None and complete.y_test is not None
    assert len(images.y_train) + len(images.y_test) == len(complete.y_train) + len(complete.y_test)
    [(file, why)] = images.skipped
    assert file.endswith("dogs/broken.png") and why


def test_folder_truncated_images_are_all_listed(tmp_path: Path) -> None:
    write_folder(tmp_path, "RGB")
    for name in ("0.png", "1.png"):
        path = tmp_path / "train" / "cats" / name
        path.write_bytes(path.read_bytes()[:-30])
    images = load_dataset("folder", tmp_path, channels=3)
    assert sorted(Path(file).name for file, _ in images.skipped) == ["0.png", "1.png"]


def test_folder_empty_class_or_train_dir_is_reported(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_dataset("folder", tmp_path)
    write_folder(tmp_path / "second", "L")
    (tmp_path / "second" / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="empty holds no images"):
        load_dataset("folder", tmp_path / "second")
    with pytest.raises(DataError, match="train is missing"):
        load_dataset("folder", tmp_path / "nowhere")


# --- npz ------------------------------------------------------------------------------------------


def npz_images(n: int, layout: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Returns (array in `layout`, the same images as NHWC) for 8x8 images."""
    channels = 1 if layout == "NHW" else 3
    nhwc = rng.integers(0, 256, size=(n, 8, 8, channels), dtype=np.uint8)
    arrays = {"NHW": nhwc[..., 0], "NHWC": nhwc, "NCHW": nhwc.transpose(0, 3, 1, 2)}
    return arrays[layout], nhwc


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
def test_npz_layouts(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    x_train, want_train = npz_images(10, layout, rng)
    x_test, want_test = npz_images(4, layout, rng)
    path = tmp_path / "set.npz"
    np.savez(path, x_train=x_train, y_train=np.arange(10) % 2, x_test=x_test, y_test=[0, 1, 1, 0])
    for where in (path, tmp_path):
        arrays = load_dataset("npz", where)
        np.testing.assert_array_equal(arrays.x_train, want_train)
        assert arrays.x_test is not None
        np.testing.assert_array_equal(arrays.x_test, want_test)
        assert arrays.color == ("L" if layout == "NHW" else "RGB")
        assert arrays.class_names == ["0", "1"]


def test_npz_floats_labels_and_holdout(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 20 * 4 * 4).reshape(20, 4, 4).astype(np.float32)
    y = np.array([3, 7] * 10)
    np.savez(tmp_path / "f.npz", x_train=x, y_train=y)
    arrays = load_dataset("npz", tmp_path / "f.npz", seed=3)
    assert arrays.class_names == ["3", "7"]
    assert arrays.x_train.dtype == np.uint8 and arrays.x_train.shape == (16, 4, 4, 1)
    assert arrays.y_test is not None and np.bincount(arrays.y_test).tolist() == [2, 2]
    assert 200 < np.asarray(arrays.x_train).max() <= 255
    assert resolve_class(arrays, "7") == 1


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((4, 5, 5, 2), np.uint8), "has shape"),
        (np.zeros((4, 5), np.uint8), "has shape"),
        (np.full((4, 5, 5), 1.5), "outside"),
        (np.zeros((4, 5, 5), np.int32), "dtype int32"),
        (np.zeros((0, 5, 5), np.uint8), "no images"),
    ],
)
def test_npz_rejects_bad_images(tmp_path: Path, x: np.ndarray, message: str) -> None:
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.zeros(len(x), np.int64))
    with pytest.raises(DataError, match=f"x_train.*{message}"):
        load_dataset("npz", tmp_path / "bad.npz")


def test_npz_rejects_bad_labels_and_missing_arrays(tmp_path: Path) -> None:
    x = np.zeros((4, 5, 5), np.uint8)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=np.zeros(3, np.int64))
    with pytest.raises(DataError, match="y_train must hold 4 integer labels"):
        load_dataset("npz", tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x_train=x)
    with pytest.raises(DataError, match="needs arrays x_train and y_train"):
        load_dataset("npz", tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x_train=x, y_train=np.zeros(4, np.int64), x_test=x)
    with pytest.raises(DataError, match="x_test and y_test go together"):
        load_dataset("npz", tmp_path / "c.npz")


def test_npz_refuses_pickled_objects(tmp_path: Path) -> None:
    objects = np.array([{"a": 1}] * 4, dtype=object)
    np.savez(tmp_path / "o.npz", x_train=objects, y_train=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_dataset("npz", tmp_path / "o.npz")


def test_npz_needs_exactly_one_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no \.npz files"):
        load_dataset("npz", tmp_path)


# --- Arguments and class resolution -------------------------------------------------------------


def test_unknown_dataset_and_bad_shapes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'svhn'"):
        load_dataset("svhn", tmp_path)
    write_idx_set(tmp_path)
    for size in (0, -3, 2.5, True):
        with pytest.raises(DataError, match="image size must be a positive integer"):
            load_dataset("mnist", tmp_path, image_size=size)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="channels must be 1 or 3"):
        load_dataset("mnist", tmp_path, channels=2)


def tiny_set(class_names: list[str], labels: list[int]) -> ImageSet:
    x = np.zeros((len(labels), 2, 2, 1), np.uint8)
    return ImageSet("folder", x, np.array(labels), None, None, class_names, "L")


def test_resolve_class_by_index_or_name() -> None:
    names = tiny_set(["ok", "scratch", "dent"], [0, 1, 2])
    assert resolve_class(names, 2) == 2
    assert resolve_class(names, "1") == 1
    assert resolve_class(names, "dent") == 2
    numbered = tiny_set(["1", "2"], [0, 1])  # a name wins over an index
    assert resolve_class(numbered, "1") == 0


def test_resolve_class_lists_the_choices() -> None:
    names = tiny_set(["ok", "scratch"], [0, 1])
    with pytest.raises(DataError, match=r"no class 'bent'.*0\.\.1 or one of: ok, scratch"):
        resolve_class(names, "bent")
    for wrong in (5, -1, "7", True):
        with pytest.raises(DataError, match="no class"):
            resolve_class(names, wrong)
    with pytest.raises(DataError, match="'scratch' has no training images"):
        resolve_class(tiny_set(["ok", "scratch"], [0, 0]), "scratch")
