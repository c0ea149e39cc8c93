"""Assembles the FastAPI app: settings, metrics, routers, middleware and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

from service.drift import DriftSettings
from service.errors import install_error_handlers
from service.metrics import Metrics
from service.middleware import BodyLimitMiddleware, RequestMetricsMiddleware
from service.oip_grpc.server import grpc_listener
from service.reload_sync import ReloadSync
from service.routers import admin, health, metrics, models, score, traffic, ui, v2
from service.settings import Settings
from service.state import ServiceState
from service.tracing import TracingMiddleware, from_environment

# Answers under this many bytes go out as they are: gzip would save little and cost a call.
GZIP_MINIMUM_BYTES = 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app with its own settings (default: from the environment) and metrics registry."""
    settings = settings if settings is not None else Settings()
    registry = Metrics(DriftSettings(settings.drift_window, settings.drift_window_s))
    tracing = from_environment(registry.spans_dropped)  # None unless OTEL_* configures it
    state = ServiceState(settings, registry, tracing)
    reload_sync = ReloadSync.from_environment(state)  # None in one process

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if tracing is not None:
            tracing.install_log_filter()
        state.start()
        if reload_sync is not None:
            reload_sync.start()
        if state.workers is not None:
            state.workers.start()
        try:
            async with grpc_listener(state, app.version):
                yield
        finally:
            if state.workers is not None:
                await state.workers.stop()
            if reload_sync is not None:
                await reload_sync.stop()
            await state.stop()
            if tracing is not None:
                tracing.shutdown()

    app = FastAPI(
        title="deepsvdd-serve",
        summary="Deep SVDD one-class anomaly scores for images, from ONNX Runtime.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = state
    app.state.reload_sync = reload_sync
    install_error_handlers(app, on_error=state.metrics.count_rejection)
    for module in (score, models, health, metrics, admin, traffic, ui, v2):
        app.include_router(module.router)
    # Inside the body limit, so that its early 413 leaves uncompressed; the binary tensors of
    # /v2 answers are not compressed (tritonclient asks for that itself, and rarely gains).
    app.add_middleware(
        GZipMiddleware,
        minimum_size=GZIP_MINIMUM_BYTES,
        compresslevel=6,
        exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/octet-stream"),
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    if tracing is not None:
        app.add_middleware(TracingMiddleware, tracing=tracing)
    return app
