"""Image datasets for one-class training, all loaded as uint8 `(N, H, W, C)` arrays.

One module per source: `idx` (MNIST, Fashion-MNIST), `cifar10`, `gtsrb`, `folder`, `npz`;
`registry` dispatches by name, `download` fetches the downloadable ones before loading.
"""

from training.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_DIR,
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    safe_unpickle,
)
from training.data.common import TEST_FRACTION, DataError, ImageSet, resolve_class
from training.data.gtsrb import GTSRB_BORDER
from training.data.idx import FASHION_MNIST_CLASSES, IDX_FILES, MNIST_CLASSES
from training.data.registry import (
    DATASETS,
    DOWNLOADABLE,
    LOADERS,
    SYSTEM_FASHION_MNIST_DIR,
    default_data_dir,
    load_dataset,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_DIR",
    "CIFAR10_TEST_BATCH",
    "CIFAR10_TRAIN_BATCHES",
    "DATASETS",
    "DOWNLOADABLE",
    "FASHION_MNIST_CLASSES",
    "GTSRB_BORDER",
    "IDX_FILES",
    "LOADERS",
    "MNIST_CLASSES",
    "SYSTEM_FASHION_MNIST_DIR",
    "TEST_FRACTION",
    "DataError",
    "ImageSet",
    "default_data_dir",
    "load_dataset",
    "resolve_class",
    "safe_unpickle",
]
