"""Runs the service under uvicorn: one process, or several workers sharing metrics files."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from service.app import create_app
from service.metrics import MULTIPROC_ENV
from service.settings import Settings

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
    }
    _exit_zero_after_graceful_shutdown()
    with multiprocess_metrics_dir(settings.workers):
        if settings.workers == 1:
            uvicorn.run(create_app(settings), **options)
        else:
            _settings_to_environment(settings)
            uvicorn.run("service.app:create_app", factory=True, workers=settings.workers, **options)
