"""Overload: several times the queue's capacity, sustained for a few seconds.

The queue holds 8 images and every request carries 4, while 24 clients send without pause.
What is admitted is scored and counted once; the rest is shed at once with 503 and
Retry-After; the server's memory stays flat and the queue empties afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.support.http import check_error
from tests.support.images import files
from tests.support.metrics import metric_value
from tests.support.models import ModelRepo
from tests.support.servers import ServerProcess, served

CLIENTS = 24
IMAGES_PER_REQUEST = 4
BLAST_S = 4.0
# Generous ceilings, an order of magnitude above what this machine shows: the point is that
# neither grows with the load, not how fast the machine is.
P99_CEILING_S = 5.0
RSS_GROWTH_CEILING = 150 * 1024 * 1024


@pytest.fixture(scope="module")
def server(
    shared_repo: ModelRepo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {
        "DEEPSVDD_MAX_QUEUE": "8",
        "DEEPSVDD_MAX_IMAGES": "4",
        "DEEPSVDD_MAX_BATCH": "8",
        "DEEPSVDD_MAX_DELAY_MS": "2",
    }
    with served(shared_repo.path, tmp_path_factory.mktemp("logs"), environ=env) as live:
        yield live


def test_overload_is_shed_and_what_is_admitted_is_scored_once(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):  # warm: pools and buffers at their working size
            assert client.post("/score", files=files(1, 2, 3, 4)).status_code == 200
        before = client.get("/metrics").text
    rss_before = server.rss_bytes()
    answers: list[tuple[int, float, httpx.Response]] = []
    rss: list[int] = []
    stop = threading.Event()

    def blast(seed: int) -> None:
        payload = files(*range(seed, seed + IMAGES_PER_REQUEST))
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not stop.is_set():
                began = time.perf_counter()
                response = client.post("/score", files=payload)
                answers.append((response.status_code, time.perf_counter() - began, response))

    threads = [threading.Thread(target=blast, args=(10 * i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + BLAST_S
    while time.monotonic() < end:
        rss.append(server.rss_bytes())
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    statuses = {status for status, _, _ in answers}
    assert statuses == {200, 503}, statuses
    accepted = [seconds for status, seconds, _ in answers if status == 200]
    shed = [response for status, _, response in answers if status == 503]
    assert len(shed) > len(accepted) / 10  # really over capacity
    for response in shed:
        assert check_error(response)["code"] == "queue_full"
        assert int(response.headers["retry-after"]) >= 1
    assert float(np.percentile(accepted, 99)) < P99_CEILING_S
    assert max(rss) - rss_before < RSS_GROWTH_CEILING

    with httpx.Client(base_url=server.url) as client:
        after = client.get("/metrics").text
    assert metric_value(after, "deepsvdd_queue_depth") == 0
    scored = metric_value(after, "deepsvdd_images_scored_total", model="digits", version="2")
    scored -= metric_value(before, "deepsvdd_images_scored_total", model="digits", version="2")
    assert scored == IMAGES_PER_REQUEST * len(accepted)
    rejected = metric_value(after, "deepsvdd_rejected_requests_total", reason="queue_full")
    rejected -= metric_value(before, "deepsvdd_rejected_requests_total", reason="queue_full")
    assert rejected == len(shed)
    assert "Traceback" not in server.log_text()
