"""What one app serves right now: the loaded models and their batchers, swapped as a whole,
and the pool that decodes the requests' images.

A request reads `ServiceState.deployment` once and keeps using that snapshot; a reload
builds the next snapshot off the event loop, swaps the reference, and retires the old
batchers only after the requests holding them have their answers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from service.batching import AdmissionBudget, Batcher
from service.decode_pool import DecodePool
from service.diagnosis import explain_nothing_served, layout_problems
from service.errors import ApiError, Unavailable
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
from service.shadow import ShadowScoring
from service.traffic import Traffic, load_policies

if TYPE_CHECKING:
    from service.otel import OtelTracing
from service.workers import WorkerReadiness

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """An immutable snapshot: the repository, the batcher of each of its versions, and the
    traffic policies that share the requests among them."""

    repository: Repository = field(default_factory=Repository)
    batchers: dict[tuple[str, int], Batcher] = field(default_factory=dict)
    traffic: Traffic = field(default_factory=Traffic)

    def batcher(self, model: LoadedModel) -> Batcher:
        return self.batchers[(model.name, model.version)]


class ServiceState:
    """The app's served versions, their queue budget, metrics and image decoding pool; loads,
    swaps and retires the versions."""

    def __init__(
        self, settings: Settings, metrics: Metrics, tracing: OtelTracing | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracing = tracing  # None: traces off (service.tracing)
        self.budget = AdmissionBudget(settings.max_queue, metrics.queue_depth)
        self.decoder = DecodePool(settings.max_pixels)
        self.deployment = Deployment()
        self.shadows = ShadowScoring(metrics)
        self.traffic_rng = random.Random()  # draws each request's version by the weights
        self.loaded = False
        # Once loading has finished with nothing to serve: why, naming what was found.
        self.problem: str | None = None
        # What the last load or reload refused, and why (`/models` lists them).
        self.refusals: list[LoadFailure] = []
        self._session_config: SessionConfig | None = None
        # Set on SIGTERM (service.server): readiness fails while requests are still answered.
        self.draining = False
        # With several workers: whether the others are ready too (`service.workers`).
        self.workers = WorkerReadiness.from_environment(lambda: self.serving and not self.draining)
        self._swap_lock = asyncio.Lock()
        self._loader: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def serving(self) -> bool:
        """Loaded, and at least one model answered its warm-up inference: this process scores."""
        return self.loaded and len(self.deployment.repository) > 0

    @property
    def ready(self) -> bool:
        """Serving, and so is every other worker of the server (with several): what the
        readiness probes answer, whichever worker takes the connection."""
        return self.serving and (self.workers is None or not self.workers.others_unready())

    @property
    def session_config(self) -> SessionConfig:
        """How sessions are built; the providers are probed on first use (once per process,
        `service.providers`), by then the server's logging is set up to report them."""
        if self._session_config is None:
            self._session_config = SessionConfig(
                providers=available_providers(self.settings.provider_preference),
                intra_op_threads=self.settings.cpu_threads,
            )
        return self._session_config

    def unready_error(self) -> ApiError:
        """The 503 while not ready: still loading (retry shortly), or nothing to serve (an
        operator has to act, so no Retry-After; `/admin/reload` picks up the fix), or
        another worker is not ready yet (retry shortly)."""
        if self.serving:
            return Unavailable(
                "not_ready", "another worker of this server is not ready yet; retry shortly"
            )
        if not self.loaded:
            return Unavailable(
                "not_ready",
                f"the service is loading its models from {str(self.settings.models_dir)!r}; "
                "retry shortly",
            )
        return ApiError(503, "no_models", self.problem or "no model could be loaded")

    def start(self) -> None:
        """Loads the repository in the background; the server answers meanwhile (not ready)."""
        self._loader = asyncio.create_task(self._initial_load(), name="load-models")

    async def _initial_load(self) -> None:
        try:
            await self.reload()
        except RepositoryError:
            self.problem = explain_nothing_served(self.settings.models_dir, [])
            log.error("not ready: %s", self.problem)
        except Exception:
            log.exception("loading the models failed")
        # What exists now (modules, the app, sessions) lives as long as the process: keep it
        # out of the cyclic collector's full passes. Each of those walked it all and held
        # the event loop, which set single-image requests' p99 (bench/serving/serving.md).
        gc.collect()
        gc.freeze()
        self.loaded = True

    async def reload(self) -> tuple[Repository, list[LoadFailure]]:
        """Re-reads the models directory and swaps the new snapshot in; returns it and refusals."""
        async with self._swap_lock:
            previous = self.deployment
            repository, traffic, failures, problems = await asyncio.to_thread(self._load, previous)
            self._swap(repository, traffic, failures)
            self.refusals = failures
            if len(repository) == 0:
                self.problem = problems[0]
                log.error("not ready: %s", self.problem)
            else:
                self.problem = None
                for problem in problems:
                    log.warning("not served: %s", problem)
            return repository, failures

    async def reload_traffic(self) -> tuple[Traffic, list[LoadFailure]]:
        """Re-reads the traffic policies alone, over the models loaded now, and swaps them in."""
        async with self._swap_lock:
            current = self.deployment
            traffic, failures = await asyncio.to_thread(
                load_policies, self.settings.models_dir, current.repository, current.traffic
            )
            self.deployment = replace(self.deployment, traffic=traffic)
            for failure in failures:
                self.metrics.model_load_failures.labels(failure.model).inc()
            return traffic, failures

    def shadow(self, primary: LoadedModel, images: np.ndarray, scores: np.ndarray) -> None:
        """Has the model's shadow version, if its policy names one, score the `images` that
        `primary` answered with `scores`, off the request's path."""
        deployment = self.deployment
        policy = deployment.traffic.policy(primary.name)
        if policy is None or policy.shadow in (None, primary.version):
            return
        shadow = deployment.repository.get(primary.name, policy.shadow)
        if shadow is not None and shadow.metadata.input == primary.metadata.input:
            self.shadows.submit(primary, shadow, images, scores)

    def _load(
        self, previous: Deployment
    ) -> tuple[Repository, Traffic, list[LoadFailure], list[str]]:
        """In a thread: the new snapshot and its policies, the refusals, and what of the
        directory is not served (one line saying why nothing is, when nothing is)."""
        models_dir = self.settings.models_dir
        repository, failures = load_repository(models_dir, self.session_config, previous.repository)
        traffic, refused = load_policies(models_dir, repository, previous.traffic)
        failures = failures + refused
        if len(repository) == 0:
            return repository, traffic, failures, [explain_nothing_served(models_dir, failures)]
        return repository, traffic, failures, layout_problems(models_dir)

    def _swap(self, repository: Repository, traffic: Traffic, failures: list[LoadFailure]) -> None:
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
                max_batch=model.images_per_run(self.settings.max_batch),
                max_delay_s=self.settings.max_delay_ms / 1000.0,
                budget=self.budget,
                metrics=self.metrics,
                tracing=self.tracing,
            )
            batcher.start()
            batchers[key] = batcher
        self.deployment = Deployment(repository, batchers, traffic)

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

    async def stop(self) -> None:
        """Stops loading, lets every batcher, serving or retiring, score what it holds, then
        frees the decoding threads."""
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
        old, self.deployment = self.deployment, Deployment()
        await asyncio.gather(*(b.close() for b in old.batchers.values()), *self._retiring)
        await self.shadows.close()
        self.decoder.close()
