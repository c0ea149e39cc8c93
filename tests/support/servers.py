"""Live services for the tests: uvicorn in a thread on a free loopback port
(`running_server(settings)` serves `create_app(settings)` in this process); the service as a
process of its own (`served`) and its helpers come from bench/harness/servers.py."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from bench.harness.processes import free_port
from bench.harness.servers import (
    ADMIN_TOKEN,
    AUTH,
    READY_S,
    ServerProcess,
    served,
    service_env,
    wait_ready,
)
from service.app import create_app
from service.settings import Settings

__all__ = [
    "ADMIN_TOKEN",
    "AUTH",
    "READY_S",
    "LiveServer",
    "ServerProcess",
    "free_port",
    "make_settings",
    "running_server",
    "served",
    "service_env",
    "wait_ready",
]


def make_settings(models_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test server: CPU only, one ONNX Runtime thread, quiet logs, no gRPC
    (tests that serve it pick a free port)."""
    values: dict[str, Any] = {
        "models_dir": models_dir,
        "providers": "CPUExecutionProvider",
        "intra_op_threads": 1,
        "log_level": "warning",
        "grpc_port": 0,
        **overrides,
    }
    return Settings(**values)


@dataclass
class LiveServer:
    """A uvicorn server on a free loopback port, running `app` in a thread."""

    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)


@contextlib.contextmanager
def running_server(settings: Settings, *, ready: bool = True) -> Iterator[LiveServer]:
    """Serves `create_app(settings)` with uvicorn in a thread; stops it gracefully on exit."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, log_level="warning", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        end = time.monotonic() + 30.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        live = LiveServer(f"http://127.0.0.1:{port}", app, server, thread)
        if ready:
            wait_ready(live.url)
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
