"""`deepsvdd serve --workers 2` as a process: the metrics of both workers add up exactly.

Each worker writes its own files in `PROMETHEUS_MULTIPROC_DIR`, one set per process, and
every scrape merges them. A counter file left there by an earlier run must be removed at
start, or the totals would include it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import MULTIPROC_ENV, sized_files
from tests.support.images import image_bytes, noise_image
from tests.support.models import build_model
from tests.support.processes import start_process, stop_process
from tests.support.servers import free_port, service_env

MODEL = "gadgets"
WORKERS = 2
REQUESTS = 40
CLIENT_THREADS = 4
STALE_IMAGES = 1_000_000
WAIT_S = 60.0


def serve_argv(models_dir: Path, port: int) -> list[str]:
    """The `deepsvdd` entry point beside this Python, else the CLI module."""
    beside = Path(sys.executable).parent / "deepsvdd"
    entry = [str(beside)] if beside.exists() else [sys.executable, "-m", "cli"]
    return [
        *entry,
        "serve",
        "--workers",
        str(WORKERS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--models-dir",
        str(models_dir),
    ]


def write_stale_counter(metrics_dir: Path) -> Path:
    """The counter file a worker of an earlier run left behind, written by a process of its own."""
    script = (
        "from prometheus_client import Counter\n"
        "c = Counter('deepsvdd_images_scored_total', 'Images scored.', ['model', 'version'])\n"
        f"c.labels({MODEL!r}, '1').inc({STALE_IMAGES})\n"
    )
    env = {**os.environ, MULTIPROC_ENV: str(metrics_dir)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    (stale,) = metrics_dir.glob("counter_*.db")
    return stale


def per_process(metrics_dir: Path, sample: str, **labels: str) -> dict[str, float]:
    """`sample` summed over series matching `labels`, per file in the multiprocess directory."""
    values = {}
    for path in sized_files(metrics_dir):
        families = MultiProcessCollector.merge([path], accumulate=True)
        found = [
            s.value
            for family in families
            for s in family.samples
            if s.name == sample and labels.items() <= s.labels.items()
        ]
        if found:
            values[Path(path).name] = sum(found)
    return values


def total(text: str, sample: str, **labels: str) -> float:
    """`sample` summed over the series of a scrape whose labels include `labels`."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def wait_until(check: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    """Polls `check()` until true; fails naming `what` after WAIT_S or if the server died."""
    end = time.monotonic() + WAIT_S
    while not check():
        assert process.poll() is None, f"the server exited with {process.returncode}"
        assert time.monotonic() < end, f"{what} within {WAIT_S}s"
        time.sleep(0.1)


def images_for(request: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    """1 to 3 noise images, different for every request."""
    count = 1 + request % 3
    return [
        ("files", (f"{request}-{i}.png", image_bytes(noise_image(100 * request + i)), "image/png"))
        for i in range(count)
    ]


def score(url: str, request: int) -> list[bool]:
    """One request on a connection of its own; the `is_anomaly` of each image."""
    files = images_for(request)
    response = httpx.post(f"{url}/score", files=files, timeout=30.0)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL
    assert [r["index"] for r in body["results"]] == list(range(len(files)))
    return [r["is_anomaly"] for r in body["results"]]


@pytest.fixture
def server_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started servers, stopped at the end if a test left them running (SIGTERM stops the
    workers too; SIGKILL only if that hangs)."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        stop_process(process, WAIT_S)


@pytest.mark.slow
def test_two_workers_count_every_image_once(
    tmp_path: Path, server_process: list[subprocess.Popen[bytes]]
) -> None:
    build_model(tmp_path / "models", MODEL, 1, seed=5)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    stale = write_stale_counter(metrics_dir)
    # Left in place, the stale file would be merged into every scrape.
    assert per_process(metrics_dir, "deepsvdd_images_scored_total") == {stale.name: STALE_IMAGES}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    env = service_env(
        tmp_path / "models", port, DEEPSVDD_DEFAULT_MODEL=MODEL, **{MULTIPROC_ENV: str(metrics_dir)}
    )
    process = start_process(serve_argv(tmp_path / "models", port), env, log_path)
    server_process.append(process)

    def workers_ready() -> bool:
        ready = per_process(metrics_dir, "deepsvdd_model_ready", model=MODEL)
        return list(ready.values()) == [1.0] * WORKERS

    wait_until(workers_ready, "both workers did not load the model", process)
    assert not stale.exists()

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        flags = [f for one in pool.map(lambda r: score(url, r), range(REQUESTS)) for f in one]
    images, anomalies = len(flags), sum(flags)
    assert images == sum(1 + r % 3 for r in range(REQUESTS))
    assert 0 < anomalies < images  # both kinds of answer, so the two counters differ

    by_worker = per_process(metrics_dir, "deepsvdd_images_scored_total")
    assert len(by_worker) == WORKERS and all(n > 0 for n in by_worker.values()), by_worker
    assert sum(by_worker.values()) == images

    def scrape() -> str:
        response = httpx.get(f"{url}/metrics", timeout=10.0)
        assert response.status_code == 200
        return response.text

    # A request's duration is observed just after its answer is sent: wait for the last.
    wait_until(
        lambda: (
            total(scrape(), "deepsvdd_request_duration_seconds_count", route="/score") >= REQUESTS
        ),
        "the /score request durations did not add up",
        process,
    )
    for _ in range(4):  # each scrape on a fresh connection, answered by either worker
        text = scrape()
        assert total(text, "deepsvdd_images_scored_total") == images
        assert total(text, "deepsvdd_images_scored_total", model=MODEL, version="1") == images
        assert total(text, "deepsvdd_anomalies_total") == anomalies
        assert total(text, "deepsvdd_score_ratio_count", model=MODEL) == images
        assert total(text, "deepsvdd_batch_size_sum", model=MODEL) == images
        score_requests = {"route": "/score", "method": "POST"}
        assert total(text, "deepsvdd_request_duration_seconds_count", **score_requests) == REQUESTS
        assert (
            total(text, "deepsvdd_request_duration_seconds_count", status="2xx", **score_requests)
            == REQUESTS
        )
        assert (
            total(text, "deepsvdd_request_duration_seconds_bucket", le="+Inf", **score_requests)
            == REQUESTS
        )
        assert total(text, "deepsvdd_model_ready", model=MODEL) == 1
        assert total(text, "deepsvdd_queue_depth") == 0

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=WAIT_S) == 0, log_path.read_text()
