"""Micro-batching: requests for one model version share ONNX Runtime runs.

Each `Batcher` owns a thread that takes the first waiting request, gathers more for at most
`max_delay` or until `max_batch` images, and runs them, one run at a time, in chunks of at
most `max_batch`; results go back to the event loop with `call_soon_threadsafe`. An
`AdmissionBudget` shared by all batchers bounds the images admitted and not yet scored;
beyond it a request is shed with a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Gauge

from service.errors import ApiError, Unavailable
from service.metrics import Metrics
from service.repository import LoadedModel

if TYPE_CHECKING:
    from service.otel import OtelTracing

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


# A job's answer: float64 scores `(n,)`, and the float32 extra outputs it asked for by name
# (`embedding` `(n, p)`, `anomaly_map` `(n, h, w)`).
Scored = tuple[np.ndarray, dict[str, np.ndarray]]


@dataclass(eq=False)
class _Job:
    images: np.ndarray  # (n, C, H, W) float32
    future: asyncio.Future[Scored]
    enqueued: float
    extras: frozenset[str] = frozenset()
    # With traces on: the request's trace context and arrival (ns since the epoch).
    trace: tuple[Any, int] | None = None


_STOP = None  # put on the queue by `close`: run what is queued, then end the thread


class Batcher:
    """The batching queue and scheduling thread of one model version.

    The thread, not the event loop, takes jobs off the queue and starts each run: it blocks
    on the queue with the interpreter lock released and starts the next run as soon as the
    previous one ends. Measured with the loop doing the dispatch, ONNX Runtime sat idle
    about half the time waiting for the loop to finish decoding other uploads, while
    requests waited in the queue (bench/serving/serving.md); with the thread, the loop only hands
    jobs in and receives results.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch: int,
        max_delay_s: float,
        budget: AdmissionBudget,
        metrics: Metrics,
        tracing: OtelTracing | None = None,
    ) -> None:
        self.model = model
        self._tracing = tracing
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._budget = budget
        self._metrics = metrics
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leases = 0
        self._no_leases = asyncio.Event()
        self._no_leases.set()
        self._closing = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._work, name=f"batcher-{self.model.name}-{self.model.version}", daemon=True
        )
        self._thread.start()

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
        scores, _ = await self.infer(images)
        return scores

    async def infer(self, images: np.ndarray, extras: frozenset[str] = frozenset()) -> Scored:
        """`score`, and the graph's `extras` outputs for the images, from the same run."""
        count = images.shape[0]
        if not self._budget.try_admit(count):
            raise Unavailable(
                "queue_full",
                f"the scoring queue is full ({self._budget.admitted} of "
                f"{self._budget.capacity} images waiting); retry shortly",
            )
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        job = _Job(images, future, time.perf_counter(), extras)
        if self._tracing is not None:
            context = self._tracing.capture()
            job.trace = None if context is None else (context, time.time_ns())
        self._queue.put(job)
        return await future

    async def close(self) -> None:
        """Waits for the requests holding a lease, scores what is queued, stops the thread."""
        self._closing = True
        await self._no_leases.wait()
        self._queue.put(_STOP)
        if self._stopped is not None:
            await self._stopped
        if self._thread is not None:
            self._thread.join()  # it has signalled its very last step: no wait to speak of

    # --- In the batcher's thread --------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                jobs, stop = self._gather(first)
                self._run(jobs)
                if stop:
                    return
        finally:
            self._to_loop(self._finished)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """`first` and what arrives within `max_delay` (up to `max_batch` images); True: stop."""
        jobs, count = [first], first.images.shape[0]
        deadline = time.monotonic() + self._max_delay_s
        while count < self._max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
            count += job.images.shape[0]
        return jobs, False

    def _run(self, jobs: list[_Job]) -> None:
        """Scores `jobs` and answers each; whatever fails, every job gets an answer and the
        thread goes on."""
        try:
            started, started_ns = time.perf_counter(), time.time_ns()
            for job in jobs:
                self._metrics.queue_wait.observe(started - job.enqueued)
            images = np.concatenate([job.images for job in jobs])
            scored = self._run_chunks(images, frozenset().union(*(job.extras for job in jobs)))
            if self._tracing is not None:
                self._trace(jobs, started_ns, time.time_ns())
        except Exception:
            log.exception(
                "model %s v%d failed on a batch of %d images",
                self.model.name,
                self.model.version,
                sum(job.images.shape[0] for job in jobs),
            )
            self._to_loop(self._fail, jobs)
        else:
            self._to_loop(self._answer, jobs, scored)

    def _trace(self, jobs: list[_Job], started_ns: int, ended_ns: int) -> None:
        """Each traced job's queue-wait and inference spans (service.tracing)."""
        assert self._tracing is not None
        traced = [(*job.trace, job.images.shape[0]) for job in jobs if job.trace is not None]
        if traced:
            self._tracing.batch_spans(traced, self.model, started_ns, ended_ns)

    def _run_chunks(self, images: np.ndarray, extras: frozenset[str]) -> Scored:
        """ONNX Runtime runs of at most `max_batch` images; the `extras` outputs too."""
        name = self.model.name
        scores: list[np.ndarray] = []
        outputs: dict[str, list[np.ndarray]] = {extra: [] for extra in extras}
        for start in range(0, images.shape[0], self._max_batch):
            chunk = images[start : start + self._max_batch]
            began = time.perf_counter()
            if extras:
                chunk_scores, chunk_outputs = self.model.run_outputs(chunk, extras)
                for extra, array in chunk_outputs.items():
                    outputs[extra].append(array)
            else:
                chunk_scores = self.model.run(chunk)
            scores.append(chunk_scores)
            self._metrics.inference_duration.labels(name).observe(time.perf_counter() - began)
            self._metrics.batch_size.labels(name).observe(chunk.shape[0])
        return np.concatenate(scores), {k: np.concatenate(v) for k, v in outputs.items()}

    def _to_loop(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(callback, *args)

    # --- Back on the event loop ---------------------------------------------------------

    def _answer(self, jobs: list[_Job], scored: Scored) -> None:
        scores, outputs = scored
        offset = 0
        for job in jobs:
            count = job.images.shape[0]
            if not job.future.done():
                part = slice(offset, offset + count)
                job.future.set_result((scores[part], {k: outputs[k][part] for k in job.extras}))
            offset += count
        self._budget.release(offset)

    def _fail(self, jobs: list[_Job]) -> None:
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
        self._budget.release(sum(job.images.shape[0] for job in jobs))

    def _finished(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)
