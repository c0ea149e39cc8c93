"""A worker of `deepsvdd serve --workers 2` killed with SIGKILL under load: the supervisor
replaces it within seconds, almost every request is answered, and its metrics are neither
lost nor counted twice (its counters stay in the sums, its live gauges stop counting).

The bound on lost requests: each client thread has one request in flight at a time, each on
a connection of its own, and the listening socket (with its backlog) is shared, so only the
requests the killed worker had already accepted are lost: at most one per client thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from service.metrics import MULTIPROC_ENV
from service.workers import ROSTER_FILE
from tests.deploy.test_workers import (
    MODEL,
    WORKERS,
    per_process,
    serve_argv,
    server_process,
    total,
    wait_until,
)
from tests.support.images import image_bytes, noise_image
from tests.support.models import build_model
from tests.support.processes import start_process
from tests.support.servers import free_port, service_env

__all__ = ["server_process"]  # the fixture, shared with test_workers
CLIENTS = 4
# A new worker in the supervisor's list within this (5 s measured under the test's load on a
# busy 2-core machine); ready (ONNX Runtime imported, the model loaded and warmed up) takes
# longer: wait_until's WAIT_S.
REPLACED_WITHIN_S = 20.0


def roster(metrics_dir: Path) -> list[int]:
    """The supervisor's list of live workers (service.workers)."""
    try:
        return [int(line) for line in (metrics_dir / ROSTER_FILE).read_text().split()]
    except FileNotFoundError:
        return []


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def ready_server(
    tmp_path: Path, server_process: list[subprocess.Popen[bytes]], **env: str
) -> tuple[str, Path, subprocess.Popen[bytes]]:
    """`deepsvdd serve --workers 2` over a new model with `env`, its metrics in
    tmp_path/prometheus, once ready: its URL, metrics directory and process."""
    models, metrics_dir = tmp_path / "models", tmp_path / "prometheus"
    build_model(models, MODEL, 1, seed=5)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    variables = service_env(models, port, **env, **{MULTIPROC_ENV: str(metrics_dir)})
    process = start_process(serve_argv(models, port), variables, tmp_path / "server.log")
    server_process.append(process)
    wait_until(lambda: ready(url), "the server did not become ready", process)
    return url, metrics_dir, process


class Load:
    """Client threads posting one image at a time, each on a new connection; every outcome
    counted (a status, or the name of the transport error)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outcomes: Counter[str] = Counter()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def _run(self, seed: int) -> None:
        body = image_bytes(noise_image(seed))
        while not self.stop.is_set():
            try:
                files = {"files": ("a.png", body, "image/png")}
                outcome = str(httpx.post(f"{self.url}/score", files=files, timeout=30).status_code)
            except httpx.TransportError as exc:
                outcome = type(exc).__name__
            with self._lock:
                self.outcomes[outcome] += 1

    def answered(self) -> int:
        with self._lock:
            return self.outcomes["200"]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_metrics_kept(
    tmp_path: Path, server_process: list[subprocess.Popen[bytes]]
) -> None:
    url, metrics_dir, process = ready_server(tmp_path, server_process, DEEPSVDD_DEFAULT_MODEL=MODEL)
    before = roster(metrics_dir)
    assert len(before) == WORKERS

    with Load(url) as load:
        wait_until(lambda: load.answered() >= 20, "no load", process)
        killed = before[0]
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        answered_at_kill = load.answered()

        def replaced() -> bool:
            now = roster(metrics_dir)
            return len(now) == WORKERS and killed not in now

        wait_until(replaced, "the killed worker was not replaced", process)
        replaced_after = time.monotonic() - killed_at
        wait_until(lambda: ready(url), "the new worker did not become ready", process)
        wait_until(lambda: load.answered() >= answered_at_kill + 20, "no load after", process)

    lost = load.outcomes.total() - load.answered()
    assert lost <= CLIENTS, load.outcomes
    assert replaced_after < REPLACED_WITHIN_S
    assert before[1] in roster(metrics_dir)  # the other worker served on

    # The dead worker's counters stay in the sums; its live gauges are gone.
    files = {p.name for p in metrics_dir.glob("*.db")}
    assert f"counter_{killed}.db" in files and f"histogram_{killed}.db" in files, files
    assert not [f for f in files if f.startswith("gauge_live") and f.endswith(f"_{killed}.db")]
    scored = per_process(metrics_dir, "deepsvdd_images_scored_total")
    assert scored[f"counter_{killed}.db"] > 0
    text = httpx.get(f"{url}/metrics", timeout=10).text
    # Scored and answered, or scored by the killed worker just before its answer was lost.
    assert load.answered() <= total(text, "deepsvdd_images_scored_total") <= load.answered() + lost
    wait_until(
        lambda: total(httpx.get(f"{url}/metrics", timeout=10).text, "deepsvdd_queue_depth") == 0,
        "the queue depth did not come back to 0",
        process,
    )
    assert total(text, "deepsvdd_model_ready", model=MODEL) == 1
    assert total(text, "deepsvdd_model_info", model=MODEL, version="1") == 1
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
