"""The drift reference a model file carries: a bounded, sorted sample of held-out normal scores."""

from __future__ import annotations

import numpy as np

# Scores kept: all of a hold-out up to this size, else this many quantile-spaced ones.
REFERENCE_SIZE = 1000


def reference_sample(normal: np.ndarray, size: int = REFERENCE_SIZE) -> list[float]:
    """The sorted normal scores, or `size` of their quantiles evenly spaced from min to max
    when there are more: the distribution is kept, the file stays small."""
    scores = np.sort(np.asarray(normal, dtype=np.float64).ravel())
    if scores.size < 2:
        raise ValueError(f"a score reference needs at least 2 normal scores, got {scores.size}")
    if scores.size > size:
        scores = np.quantile(scores, np.linspace(0.0, 1.0, size))
    return [float(v) for v in scores]
