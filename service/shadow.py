"""Shadow scoring: a model's shadow version scores the images its primary answered, after the
answer and off the request's path, and the two are compared over a sliding window of images."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.metrics import Metrics
from service.repository import LoadedModel

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 2  # shadow batches running at once; more are dropped ("busy")
WINDOW = 1000  # images each comparison (agreement, rank correlation) is over
CLOSE_S = 5.0  # how long stopping waits for the shadow batches in flight


def _default_threshold(model: LoadedModel) -> float:
    meta = model.metadata
    return meta.thresholds[meta.default_threshold]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the ranks (NaN while a side is constant)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ranks_a = np.argsort(np.argsort(a)).astype(np.float64)
    ranks_b = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


class Comparison:
    """The last `WINDOW` images a primary and its shadow both scored: their scores, and
    whether they decided alike at each one's own default threshold."""

    def __init__(self, size: int = WINDOW) -> None:
        self.primary: deque[float] = deque(maxlen=size)
        self.shadow: deque[float] = deque(maxlen=size)
        self.alike: deque[bool] = deque(maxlen=size)

    def add(self, primary: np.ndarray, shadow: np.ndarray, thresholds: tuple[float, float]) -> None:
        self.primary.extend(primary.tolist())
        self.shadow.extend(shadow.tolist())
        self.alike.extend(((primary > thresholds[0]) == (shadow > thresholds[1])).tolist())

    def agreement(self) -> float:
        return sum(self.alike) / len(self.alike)

    def correlation(self) -> float:
        return rank_correlation(np.array(self.primary), np.array(self.shadow))


class ShadowScoring:
    """Runs shadow batches on threads of its own, at most `max_in_flight` at once, and
    publishes each (model, primary, shadow) pair's comparison; drops are counted by reason."""

    def __init__(self, metrics: Metrics, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._metrics = metrics
        self._max = max_in_flight
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="shadow")
        self._tasks: set[asyncio.Task[None]] = set()
        self._comparisons: dict[tuple[str, int, int], Comparison] = {}

    def submit(
        self, primary: LoadedModel, shadow: LoadedModel, images: np.ndarray, scores: np.ndarray
    ) -> None:
        """Schedules `shadow` on the `images` that `primary` gave `scores`; returns at once."""
        if len(self._tasks) >= self._max:
            self._drop(primary.name, "busy")
            return
        task = asyncio.create_task(self._score(primary, shadow, images, scores), name="shadow")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop(self, model: str, reason: str) -> None:
        self._metrics.shadow_dropped.labels(model, reason).inc()

    async def _score(
        self, primary: LoadedModel, shadow: LoadedModel, images: np.ndarray, scores: np.ndarray
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            theirs = await loop.run_in_executor(self._executor, shadow.run, images)
        except Exception as exc:  # whatever the shadow does, the primary has answered
            log.warning("shadow %s v%d failed: %s", shadow.name, shadow.version, exc)
            self._drop(primary.name, "error")
            return
        if not np.isfinite(theirs).all():
            self._drop(primary.name, "non_finite")
            return
        self._metrics.shadow_images.labels(shadow.name, str(shadow.version)).inc(len(theirs))
        self._compare(primary, shadow, scores, theirs)

    def _compare(
        self, primary: LoadedModel, shadow: LoadedModel, ours: np.ndarray, theirs: np.ndarray
    ) -> None:
        key = (primary.name, primary.version, shadow.version)
        comparison = self._comparisons.setdefault(key, Comparison())
        comparison.add(ours, theirs, (_default_threshold(primary), _default_threshold(shadow)))
        labels = (primary.name, str(primary.version), str(shadow.version))
        self._metrics.shadow_agreement.labels(*labels).set(comparison.agreement())
        rho = comparison.correlation()
        if np.isfinite(rho):
            self._metrics.shadow_rank_correlation.labels(*labels).set(rho)

    async def close(self) -> None:
        """Lets the shadow batches in flight finish (a while), then frees the threads."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_S)
        self._executor.shutdown(wait=False)
