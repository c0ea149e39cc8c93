"""What one app serves right now: the loaded models and their batchers, swapped as a whole.

A request reads `ServiceState.deployment` once and keeps using that snapshot; a reload
builds the next snapshot off the event loop, swaps the reference, and retires the old
batchers only after the requests holding them have their answers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from modelfile.metadata import InputSpec
from modelfile.pixels import to_input
from service.batching import AdmissionBudget, Batcher
from service.decoding import decode_pixels, fast_png
from service.errors import ApiError
from service.metrics import Metrics
from service.repository import (
    INVALID_NAME,
    LoadedModel,
    LoadFailure,
    Repository,
    RepositoryError,
    SessionConfig,
    available_providers,
    load_repository,
)
from service.settings import Settings
from service.uploads import Upload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """An immutable pair: a repository snapshot and the batcher of each of its versions."""

    repository: Repository = field(default_factory=Repository)
    batchers: dict[tuple[str, int], Batcher] = field(default_factory=dict)

    def batcher(self, model: LoadedModel) -> Batcher:
        return self.batchers[(model.name, model.version)]


# Models whose input has at most this many samples get their ready-made PNGs decoded on the
# event loop (libspng: about 8 us for 28x28, 0.1 ms for 64x64x3): a thread hand-off costs more.
INLINE_SAMPLES = 64 * 64 * 3


def _decode_all(
    uploads: list[Upload], spec: InputSpec, max_pixels: int, try_fast: bool
) -> list[np.ndarray]:
    """In a pool thread: uint8 `(H, W, C)` pixels of each upload; the first bad one raises.
    `try_fast`: try `fast_png` first (False when the event loop has tried it already)."""
    return [
        decode_pixels(u.data, u.what, spec, max_pixels)
        if not try_fast or (fast := fast_png(u.data, spec, max_pixels)) is None
        else fast
        for u in uploads
    ]


class ServiceState:
    """The app's models, queue budget, thread pools and metrics."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.session_config = SessionConfig(
            providers=available_providers(settings.provider_preference),
            intra_op_threads=settings.cpu_threads,
        )
        self.budget = AdmissionBudget(settings.max_queue, metrics.queue_depth)
        self.deployment = Deployment()
        self.loaded = False
        # Set on SIGTERM (service.server): readiness fails while requests are still answered.
        self.draining = False
        self._decode_jobs = max(2, os.cpu_count() or 1)
        self._decode_pool = ThreadPoolExecutor(self._decode_jobs, thread_name_prefix="decode")
        self._swap_lock = asyncio.Lock()
        self._loader: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        """Loaded, and at least one model answered its warm-up inference."""
        return self.loaded and len(self.deployment.repository) > 0

    def start(self) -> None:
        """Loads the repository in the background; the server answers meanwhile (not ready)."""
        self._loader = asyncio.create_task(self._initial_load(), name="load-models")

    async def _initial_load(self) -> None:
        try:
            await self.reload()
        except RepositoryError as exc:
            log.error("no models served: %s", exc)
        except Exception:
            log.exception("loading the models failed")
        # What exists now (modules, the app, sessions) lives as long as the process: keep it
        # out of the cyclic collector's full passes. Each of those walked it all and held
        # the loop 15 ms; single-image p99 went from 21.7 ms to 6.6 ms (bench/serving.md).
        gc.collect()
        gc.freeze()
        self.loaded = True

    async def reload(self) -> tuple[Repository, list[LoadFailure]]:
        """Re-reads the models directory and swaps the new snapshot in; returns it and refusals."""
        async with self._swap_lock:
            previous = self.deployment.repository
            repository, failures = await asyncio.to_thread(
                load_repository, self.settings.models_dir, self.session_config, previous
            )
            self._swap(repository, failures)
            return repository, failures

    def _swap(self, repository: Repository, failures: list[LoadFailure]) -> None:
        old = self.deployment
        batchers: dict[tuple[str, int], Batcher] = {}
        for model in repository.all():
            key = (model.name, model.version)
            kept = old.batchers.get(key)
            if kept is not None and kept.model is model:
                batchers[key] = kept
                continue
            batcher = Batcher(
                model,
                max_batch=self.settings.max_batch,
                max_delay_s=self.settings.max_delay_ms / 1000.0,
                budget=self.budget,
                metrics=self.metrics,
            )
            batcher.start()
            batchers[key] = batcher
        self.deployment = Deployment(repository, batchers)

        for key, batcher in old.batchers.items():
            if batchers.get(key) is not batcher:
                self.metrics.model_retired(batcher.model)
                task = asyncio.create_task(batcher.close(), name=f"retire-{key[0]}-{key[1]}")
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
        for model in repository.all():
            self.metrics.model_served(model)
        served = set(repository.names())
        for name in served:
            self.metrics.model_ready.labels(name).set(1)
        refused = {f.model for f in failures if f.model != INVALID_NAME}
        for name in set(old.repository.names()) | refused:
            if name not in served:
                self.metrics.model_ready.labels(name).set(0)
        for failure in failures:
            self.metrics.model_load_failures.labels(failure.model).inc()

    async def decode(self, uploads: list[Upload], spec: InputSpec) -> np.ndarray:
        """Decodes the uploads; float32 `(n, C, H, W)` pixel/255, in upload order.

        PNGs already in a small model's size and mode decode here on the event loop
        (`service.decoding.fast_png`); the others go to the thread pool in one job per
        CPU, not one per image: a small image decodes in tens of microseconds, less than
        the cost of a future and a loop wake-up per image.
        """
        max_pixels = self.settings.max_pixels
        inline = spec.channels * spec.height * spec.width <= INLINE_SAMPLES
        pixels: list[np.ndarray | None]
        if inline:
            pixels = [fast_png(u.data, spec, max_pixels) for u in uploads]
        else:
            pixels = [None] * len(uploads)
        rest = [i for i, p in enumerate(pixels) if p is None]
        if rest:
            loop = asyncio.get_running_loop()
            step = -(-len(rest) // self._decode_jobs)
            chunks = [rest[i : i + step] for i in range(0, len(rest), step)]
            pending = [
                loop.run_in_executor(
                    self._decode_pool,
                    _decode_all,
                    [uploads[i] for i in chunk],
                    spec,
                    max_pixels,
                    not inline,
                )
                for chunk in chunks
            ]
            decoded = await asyncio.gather(*pending, return_exceptions=True)
            for result in decoded:
                if isinstance(result, ApiError):
                    raise result
                if isinstance(result, BaseException):
                    raise RuntimeError("image decoding failed unexpectedly") from result
            for chunk, result in zip(chunks, decoded, strict=True):
                assert isinstance(result, list)
                for i, array in zip(chunk, result, strict=True):
                    pixels[i] = array
        return to_input([p for p in pixels if p is not None])

    async def stop(self) -> None:
        """Stops loading, lets every batcher score what it holds, and frees the threads."""
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
        old, self.deployment = self.deployment, Deployment()
        await asyncio.gather(*(b.close() for b in old.batchers.values()), *self._retiring)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
