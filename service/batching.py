"""Micro-batching: requests for one model version share ONNX Runtime runs.

Each `Batcher` owns a worker task that takes the first waiting request, gathers more for
at most `max_delay` or until `max_batch` images, and runs them in its own thread, one run
at a time, in chunks of at most `max_batch`. An `AdmissionBudget` shared by all batchers
bounds the images admitted and not yet scored; beyond it a request is shed with a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from prometheus_client import Gauge

from service.errors import ApiError, Unavailable
from service.metrics import Metrics
from service.repository import LoadedModel

log = logging.getLogger(__name__)


class AdmissionBudget:
    """Counts images admitted and not yet scored, across every model; refuses beyond capacity."""

    def __init__(self, capacity: int, depth: Gauge) -> None:
        self.capacity = capacity
        self.admitted = 0
        self._depth = depth

    def try_admit(self, count: int) -> bool:
        if self.admitted + count > self.capacity:
            return False
        self.admitted += count
        self._depth.inc(count)
        return True

    def release(self, count: int) -> None:
        self.admitted -= count
        self._depth.dec(count)


@dataclass(eq=False)
class _Job:
    images: np.ndarray  # (n, C, H, W) float32
    future: asyncio.Future[np.ndarray]
    enqueued: float


class Batcher:
    """The batching queue and worker of one model version."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch: int,
        max_delay_s: float,
        budget: AdmissionBudget,
        metrics: Metrics,
    ) -> None:
        self.model = model
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._budget = budget
        self._metrics = metrics
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"ort-{model.name}")
        self._worker: asyncio.Task[None] | None = None
        self._leases = 0
        self._no_leases = asyncio.Event()
        self._no_leases.set()
        self._closing = False

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name=f"batcher-{self.model.name}")

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Held by a request from model lookup to its answer; `close` waits for every lease."""
        if self._closing:
            raise RuntimeError(f"batcher of {self.model.name} v{self.model.version} is closed")
        self._leases += 1
        self._no_leases.clear()
        try:
            yield
        finally:
            self._leases -= 1
            if self._leases == 0:
                self._no_leases.set()

    async def score(self, images: np.ndarray) -> np.ndarray:
        """Scores `(n, C, H, W)` images in a shared batch; float64 `(n,)` in the same order."""
        count = images.shape[0]
        if not self._budget.try_admit(count):
            raise Unavailable(
                "queue_full",
                f"the scoring queue is full ({self._budget.admitted} of "
                f"{self._budget.capacity} images waiting); retry shortly",
            )
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(images, future, time.perf_counter()))
        return await future

    async def close(self) -> None:
        """Waits for the requests holding a lease, scores what is queued, stops the worker."""
        self._closing = True
        await self._no_leases.wait()
        self._queue.put_nowait(None)
        if self._worker is not None:
            await self._worker
        self._executor.shutdown(wait=False)

    async def _work(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            jobs, stop = await self._gather(first)
            await self._run(jobs)
            if stop:
                return

    async def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """`first` and what arrives within `max_delay` (up to `max_batch` images); True: stop."""
        jobs, count = [first], first.images.shape[0]
        deadline = asyncio.get_running_loop().time() + self._max_delay_s
        while count < self._max_batch:
            try:
                async with asyncio.timeout_at(deadline):
                    job = await self._queue.get()
            except TimeoutError:
                return jobs, False
            if job is None:
                return jobs, True
            jobs.append(job)
            count += job.images.shape[0]
        return jobs, False

    async def _run(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        for job in jobs:
            self._metrics.queue_wait.observe(started - job.enqueued)
        total = sum(job.images.shape[0] for job in jobs)
        loop = asyncio.get_running_loop()
        try:
            images = np.concatenate([job.images for job in jobs])
            scores = await loop.run_in_executor(self._executor, self._run_chunks, images)
        except Exception:
            log.exception(
                "model %s v%d failed on a batch of %d images",
                self.model.name,
                self.model.version,
                total,
            )
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(
                        ApiError(
                            500,
                            "inference_failed",
                            f"model {self.model.name} v{self.model.version} failed to score "
                            "this batch; the server log has the details",
                        )
                    )
        else:
            offset = 0
            for job in jobs:
                count = job.images.shape[0]
                if not job.future.done():
                    job.future.set_result(scores[offset : offset + count])
                offset += count
        finally:
            self._budget.release(total)

    def _run_chunks(self, images: np.ndarray) -> np.ndarray:
        """In the batcher's thread: ONNX Runtime runs of at most `max_batch` images."""
        name = self.model.name
        parts = []
        for start in range(0, images.shape[0], self._max_batch):
            chunk = images[start : start + self._max_batch]
            began = time.perf_counter()
            parts.append(self.model.run(chunk))
            self._metrics.inference_duration.labels(name).observe(time.perf_counter() - began)
            self._metrics.batch_size.labels(name).observe(chunk.shape[0])
        return np.concatenate(parts)
