"""Runs the service under uvicorn: one process, or several workers sharing metrics files.

On SIGTERM each process first drains (`DEEPSVDD_DRAIN_S`): readiness answers 503 while
requests are still accepted and answered, so that balancers stop routing here; then uvicorn
closes the listener and finishes the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from service.app import create_app
from service.http_limits import limited_protocol
from service.metrics import MULTIPROC_ENV
from service.settings import Settings
from service.state import ServiceState
from service.workers import Supervisor, clear_stale

log = logging.getLogger(__name__)

# In-flight requests get this long to finish after SIGTERM before uvicorn cancels them.
GRACEFUL_SHUTDOWN_S = 30


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, extended to the `service` loggers."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["service"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


@contextlib.contextmanager
def multiprocess_metrics_dir(workers: int) -> Iterator[None]:
    """Prometheus multiprocess files: the configured directory emptied, or a temporary one."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        clear_stale(path)
        yield
    elif workers > 1:
        path = Path(tempfile.mkdtemp(prefix="deepsvdd-metrics-"))
        os.environ[MULTIPROC_ENV] = str(path)
        try:
            yield
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(path, ignore_errors=True)
    else:
        yield


class DrainOnSigterm:
    """The app, wrapped: the first SIGTERM starts a drain of `drain_s` seconds, after which
    the signal goes on to uvicorn's own handler (which closes the listener and shuts down).

    The handler is installed at lifespan start-up, inside the serving process's event loop
    (each worker's, with several), over the one uvicorn has just installed; a second SIGTERM
    during the drain stops at once. Answers given while draining close their connection.
    """

    def __init__(self, app: FastAPI, drain_s: float) -> None:
        self.app = app
        self.drain_s = drain_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handed_over: Any = None
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.state.draining:
            await self.app(scope, receive, _closing(send))
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watch_lifespan() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._install()
            elif message["type"] == "lifespan.shutdown":
                self._uninstall()
            return message

        await self.app(scope, watch_lifespan, send)

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.app.state.service
        return state

    def _install(self) -> None:
        if self.drain_s <= 0 or threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        self._handed_over = signal.getsignal(signal.SIGTERM)
        self._loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)

    def _uninstall(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handed_over)
            self._loop = None

    def _on_sigterm(self) -> None:
        if self.state.draining:
            self._stop()
            return
        self.state.draining = True
        log.info("SIGTERM: readiness fails now; serving %g s more, then stopping", self.drain_s)
        assert self._loop is not None
        self._timer = self._loop.call_later(self.drain_s, self._stop)

    def _stop(self) -> None:
        """Hands SIGTERM to the handler that was there before (uvicorn's: shut down)."""
        self._uninstall()
        signal.raise_signal(signal.SIGTERM)


def _closing(send: Send) -> Send:
    """`send` with `Connection: close` on the answer: while draining, a keep-alive client
    reconnects for its next request (to a ready replica) instead of reusing this connection
    until the listener closes under it."""

    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (b"connection", b"close")]
            message = {**message, "headers": headers}
        await send(message)

    return send_closing


def app_from_environment() -> DrainOnSigterm:
    """The uvicorn workers' factory: the app of the environment's settings, draining on SIGTERM."""
    settings = Settings()
    return DrainOnSigterm(create_app(settings), settings.drain_s)


def _exit_zero_after_graceful_shutdown() -> None:
    """uvicorn re-raises SIGTERM/SIGINT once it has shut down; answered here, the exit is 0."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: None)


def _settings_to_environment(settings: Settings) -> None:
    """uvicorn workers build their app from the environment: make it say `settings`."""
    for key in [k for k in os.environ if k.startswith("DEEPSVDD_")]:
        del os.environ[key]
    os.environ.update(settings.to_env())


def serve(settings: Settings) -> None:
    """Serves until SIGTERM or SIGINT, then finishes the requests in flight and returns."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": _log_config(settings.log_level),
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "http": limited_protocol(settings.max_header_bytes, settings.max_headers),
    }
    _exit_zero_after_graceful_shutdown()
    with multiprocess_metrics_dir(settings.workers):
        if settings.workers == 1:
            uvicorn.run(DrainOnSigterm(create_app(settings), settings.drain_s), **options)
        else:
            _settings_to_environment(settings)
            _supervise(settings.workers, options)


def _supervise(workers: int, options: dict[str, Any]) -> None:
    """What `uvicorn.run` does for several workers, with `service.workers.Supervisor` (which
    keeps the roster of live workers and marks dead ones) in place of uvicorn's own."""
    config = uvicorn.Config(
        "service.server:app_from_environment", factory=True, workers=workers, **options
    )
    Supervisor(config, [config.bind_socket()], Path(os.environ[MULTIPROC_ENV])).run()
