"""uint8 pixels to the float32 tensor a model file takes: `[N, C, H, W]`, pixel values / 255."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_input(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """uint8 `(N, H, W, C)` (an array, or a list of `(H, W, C)`) -> float32 `(N, C, H, W)` / 255."""
    stacked = images if isinstance(images, np.ndarray) else np.stack(images)
    batch = stacked.transpose(0, 3, 1, 2).astype(np.float32)
    batch /= np.float32(255.0)
    return batch
