"""The service as a process: `python -m service`, graceful SIGTERM, several workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.metrics import MULTIPROC_ENV
from service.server import multiprocess_metrics_dir
from tests.support.images import image_bytes, noise_image
from tests.support.metrics import metric_value
from tests.support.models import ModelRepo
from tests.support.processes import start_process, stop_process
from tests.support.servers import free_port, service_env, wait_ready

Spawn = Callable[[dict[str, str]], subprocess.Popen[bytes]]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """`spawn(env)`: `python -m service` with its output in a log, stopped at the test's end."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = tmp_path / f"service-{len(processes)}.log"
        processes.append(start_process([sys.executable, "-m", "service"], env, log))
        return processes[-1]

    yield start
    for process in processes:
        stop_process(process)


def _files(seed: int) -> dict[str, tuple[str, bytes, str]]:
    return {"files": ("a.png", image_bytes(noise_image(seed)), "image/png")}


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_and_exits_zero(
    model_repo: ModelRepo, spawn: Spawn
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A long batching delay keeps the requests in the queue when the signal arrives.
    process = spawn(service_env(model_repo.path, port, DEEPSVDD_MAX_DELAY_MS="1500"))
    wait_ready(url, process=process)
    statuses: list[int] = []

    def score(seed: int) -> None:
        statuses.append(httpx.post(f"{url}/score", files=_files(seed), timeout=30).status_code)

    threads = [threading.Thread(target=score, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + 10
    while metric_value(httpx.get(f"{url}/metrics").text, "deepsvdd_queue_depth") < 4:
        assert time.monotonic() < end, "the requests never reached the queue"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200, 200, 200, 200]
    assert process.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health/live", timeout=2)


def test_bad_settings_end_with_a_one_line_error(
    model_repo: ModelRepo, spawn: Spawn, tmp_path: Path
) -> None:
    env = service_env(model_repo.path, free_port(), DEEPSVDD_MAX_BATCH="zero")
    process = spawn(env)
    assert process.wait(timeout=60) != 0
    output = (tmp_path / "service-0.log").read_text()
    assert "bad settings" in output and "max_batch" in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_workers_share_metrics_through_the_multiprocess_directory(
    model_repo: ModelRepo, spawn: Spawn, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale from an earlier run")
    env = service_env(model_repo.path, port, DEEPSVDD_WORKERS="2")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    process = spawn(env)
    wait_ready(url, process=process)
    with httpx.Client(base_url=url, timeout=30) as client:
        for seed in range(6):
            # Ready means one worker is; the other may still be warming up and answer 503
            # with Retry-After, which a client honours.
            deadline = time.monotonic() + 60
            while True:
                response = httpx.post(
                    f"{url}/score", params={"model": "digits"}, files=_files(seed), timeout=30
                )
                if response.status_code != 503 or time.monotonic() > deadline:
                    break
                assert response.headers.get("retry-after")
                time.sleep(0.2)
            assert response.status_code == 200
        text = client.get("/metrics").text
    assert not (metrics_dir / "counter_999999.db").exists()
    assert metric_value(text, "deepsvdd_images_scored_total", model="digits", version="2") == 6
    assert metric_value(text, "deepsvdd_model_ready", model="digits") == 1
    assert metric_value(text, "deepsvdd_queue_depth") == 0
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_several_workers_get_a_temporarymultiprocess_metrics_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_metrics_dir(workers=2):
        made = Path(os.environ[MULTIPROC_ENV])
        assert made.is_dir()
    assert MULTIPROC_ENV not in os.environ and not made.exists()
    with multiprocess_metrics_dir(workers=1):
        assert MULTIPROC_ENV not in os.environ
