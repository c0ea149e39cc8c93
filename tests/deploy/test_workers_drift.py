"""`deepsvdd serve --workers 2`: each worker's drift window is a sample of the traffic, and a
scrape exports one worker's figures (the most recent), never the two added up."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.metrics import MULTIPROC_ENV
from tests.deploy.test_workers import WORKERS, per_process, serve_argv, total, wait_until
from tests.support import fashion
from tests.support.processes import start_process, stop_process
from tests.support.servers import free_port, service_env

WINDOW = 200
PER_REQUEST = 10


def score(url: str, images: np.ndarray) -> None:
    files = [("files", (f"{i}.png", fashion.png(x), "image/png")) for i, x in enumerate(images)]
    response = httpx.post(f"{url}/score", files=files, timeout=30.0)
    assert response.status_code == 200, response.text


def send(url: str, images: np.ndarray) -> None:
    """Requests on fresh connections from 4 threads, so that both workers get some."""
    chunks = [images[i : i + PER_REQUEST] for i in range(0, len(images), PER_REQUEST)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda chunk: score(url, chunk), chunks))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        stop_process(process, 60)


@pytest.mark.slow
@pytest.mark.skipif(not fashion.available(), reason="Fashion-MNIST is not installed")
def test_two_workers_export_one_window_not_their_sum(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    models = tmp_path / "models"
    name = fashion.shipped_repo(models)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = service_env(
        models,
        port,
        DEEPSVDD_DEFAULT_MODEL=name,
        DEEPSVDD_DRIFT_WINDOW=str(WINDOW),
        **{MULTIPROC_ENV: str(metrics_dir)},
    )
    process = start_process(serve_argv(models, port), env, tmp_path / "server.log")
    processes.append(process)

    def both_ready() -> bool:
        ready = per_process(metrics_dir, "deepsvdd_model_ready", model=name)
        return list(ready.values()) == [1.0] * WORKERS

    wait_until(both_ready, "both workers did not load the model", process)
    normal = fashion.test_images(fashion.TROUSER)
    send(url, normal[: 3 * WINDOW])
    by_worker = per_process(metrics_dir, "deepsvdd_images_scored_total")
    assert len(by_worker) == WORKERS and all(n > 0 for n in by_worker.values()), by_worker

    for _ in range(4):  # fresh connections: either worker answers the scrape
        text = httpx.get(f"{url}/metrics", timeout=10.0).text
        window = total(text, "deepsvdd_score_window_images", model=name)
        # One worker's window, full after its share of 600 images: not 2 x 200.
        assert window == WINDOW
        assert total(text, "deepsvdd_model_score_reference", model=name) == 600
        psi = total(text, "deepsvdd_score_drift_psi", model=name)
        assert psi in per_process(metrics_dir, "deepsvdd_score_drift_psi").values()
        assert psi < 0.25

    send(url, fashion.shifted(normal[: 3 * WINDOW], "blurred"))
    text = httpx.get(f"{url}/metrics", timeout=10.0).text
    assert total(text, "deepsvdd_score_drift_psi", model=name) > 1.0
    assert total(text, "deepsvdd_score_window_images", model=name) == WINDOW
