"""Live services for the experiments and tests: the service as a process of its own
(`python -m service`, or any command that serves) on a free loopback port, read from /proc.

`served(models_dir, log_dir, **env)` starts a process, waits for `/health/ready`, and stops it
with SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness.processes import ROOT, free_port, start_process, stop_process

ADMIN_TOKEN = "test-admin-token-0123"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READY_S = 60.0


def service_env(models_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a service subprocess: CPU, one worker of one thread (the default
    sizes them from the machine's CPUs), no gRPC listener, no inherited DEEPSVDD_* settings or
    metrics directory; `extra` overrides any of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSVDD_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        DEEPSVDD_MODELS_DIR=str(models_dir),
        DEEPSVDD_PORT=str(port),
        DEEPSVDD_PROVIDERS="CPUExecutionProvider",
        DEEPSVDD_INTRA_OP_THREADS="1",
        DEEPSVDD_WORKERS="1",
        DEEPSVDD_LOG_LEVEL="warning",
        DEEPSVDD_GRPC_PORT="0",
    )
    env.update(extra)
    return env


def wait_ready(
    url: str, deadline_s: float = READY_S, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Polls /health/ready until 200 (the models are loaded in the background); fails at
    once if `process`, the server, has exited."""
    end = time.monotonic() + deadline_s
    with httpx.Client(base_url=url, timeout=5.0) as client:
        while time.monotonic() < end:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/health/ready").status_code == 200:
                    return
            time.sleep(0.02)
    raise TimeoutError(f"{url} did not become ready within {deadline_s}s")


@dataclass
class ServerProcess:
    """A service process on a loopback port; its output goes to `log`."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
        raise KeyError(f"/proc/{self.pid}/status has no {key}")

    def rss_bytes(self) -> int:
        return self._status("VmRSS") * 1024

    def threads(self) -> int:
        return self._status("Threads")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def settle_fds(self, limit: int, within_s: float = 15.0) -> int:
        """Polls until at most `limit` fds are open (closing sockets takes a moment)."""
        end = time.monotonic() + within_s
        count = self.fds()
        while count > limit and time.monotonic() < end:
            time.sleep(0.1)
            count = self.fds()
        return count


@contextlib.contextmanager
def served(
    models_dir: Path,
    log_dir: Path,
    *,
    argv: list[str] | None = None,
    port: int | None = None,
    cwd: Path = ROOT,
    environ: Mapping[str, str] | None = None,
    **env: str,
) -> Iterator[ServerProcess]:
    """Starts the service as a process (`argv`, default `python -m service`, on `port`,
    default a free one, in `cwd`) with an admin token and `environ` and `env` added to
    `service_env`; waits until ready; stops it with SIGTERM."""
    port = free_port() if port is None else port
    log = log_dir / f"service-{port}.log"
    command = argv if argv is not None else [sys.executable, "-m", "service"]
    added = {**(environ or {}), **env}
    environment = service_env(models_dir, port, DEEPSVDD_ADMIN_TOKEN=ADMIN_TOKEN, **added)
    process = start_process(command, environment, log, cwd=cwd)
    server = ServerProcess(process, f"http://127.0.0.1:{port}", port, log)
    try:
        try:
            wait_ready(server.url, READY_S, process)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}:\n{server.log_text()}") from exc
        yield server
    finally:
        stop_process(process)
