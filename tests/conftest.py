"""Session-wide fixtures: a real Fashion-MNIST subset and a tiny model trained once on it.

Torch is imported inside the fixtures only, so the service tests also run from the serving
install when these fixtures are not requested.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
TINY_NORMAL_CLASS = 1  # trouser: the class whose one-class task is easiest to check quickly


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="session")
def fashion_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An npz of real Fashion-MNIST: 12,000 training and 2,000 test images."""
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"Debian's dataset-fashion-mnist is missing ({FASHION_DIR}): make install")
    x_train = read_idx(FASHION_DIR / "train-images-idx3-ubyte.gz")[:12000]
    y_train = read_idx(FASHION_DIR / "train-labels-idx1-ubyte.gz")[:12000]
    x_test = read_idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")[:2000]
    y_test = read_idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz")[:2000]
    path = tmp_path_factory.mktemp("fashion") / "subset.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, fashion_subset: Path) -> dict[str, Any]:
    """One-class Deep SVDD on the subset's trousers, a few epochs, exported; trained once."""
    from training.config import RunSpec, TrainConfig
    from training.pipeline import train_and_export

    models_dir = tmp_path_factory.mktemp("models")
    spec = RunSpec(
        dataset="npz",
        normal_class=str(TINY_NORMAL_CLASS),
        data_dir=fashion_subset,
        name="tiny",
        models_dir=models_dir,
        progress=False,
    )
    cfg = TrainConfig(epochs=6, pretrain=True, pretrain_epochs=2, seed=0, device="cpu")
    result = train_and_export(spec, cfg)
    assert result is not None  # one process: it exports
    return {**result, "models_dir": models_dir}


@pytest.fixture(scope="session")
def patch_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository: `patches` v1, a tiny patch model whose graph returns its anomaly
    map (tests/support/patch_models.py), beside `digits` v1, a whole-image one."""
    from tests.support.models import build_model
    from tests.support.patch_models import build_patch_model

    models_dir = tmp_path_factory.mktemp("patch-models")
    build_patch_model(models_dir, "patches", 1)
    build_model(models_dir, "digits", 1)
    return models_dir
