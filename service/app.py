"""Assembles the FastAPI app: settings, metrics, routers, middleware and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.errors import install_error_handlers
from service.metrics import Metrics
from service.middleware import BodyLimitMiddleware, RequestMetricsMiddleware
from service.oip_grpc.server import grpc_listener
from service.reload_sync import ReloadSync
from service.routers import admin, health, metrics, models, score, ui, v2
from service.settings import Settings
from service.state import ServiceState


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app with its own settings (default: from the environment) and metrics registry."""
    settings = settings if settings is not None else Settings()
    state = ServiceState(settings, Metrics())
    reload_sync = ReloadSync.from_environment(state)  # None in one process

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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

    app = FastAPI(
        title="deepsvdd-serve",
        summary="Deep SVDD one-class anomaly scores for images, from ONNX Runtime.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = state
    app.state.reload_sync = reload_sync
    install_error_handlers(app, on_error=state.metrics.count_rejection)
    for module in (score, models, health, metrics, admin, ui, v2):
        app.include_router(module.router)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    return app
