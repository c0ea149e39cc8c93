"""Issue 24, part 2: `deepsvdd serve --workers 2` under continuous load while the admin API
rolls version 2 out to 10%, promotes it to 100% and rolls back to version 1. No request fails,
and each phase's answers come from the versions its policy names, whichever worker answers."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.metrics import MULTIPROC_ENV
from tests.deploy.test_workers import WAIT_S, WORKERS, per_process, serve_argv
from tests.support.images import image_bytes, noise_image
from tests.support.models import build_model
from tests.support.processes import start_process, stop_process
from tests.support.servers import ADMIN_TOKEN, AUTH, free_port, service_env, wait_ready

MODEL = "gadgets"
LOAD_THREADS = 3
SETTLE_S = 1.5  # after a change, before its phase counts: every worker polls within 0.5 s
PHASE_S = 6.0
CANARY_SHARE = 0.10
FILES = {"files": ("a.png", image_bytes(noise_image(4)), "image/png")}


@dataclass(frozen=True)
class Answer:
    start: float
    end: float
    status: int
    version: int | None


def load(url: str, stop: threading.Event, answers: list[Answer]) -> None:
    """Scores one image per request, each on a connection of its own (so that both workers
    answer), until `stop`; records every answer, a transport failure as status 0."""
    with httpx.Client(base_url=url, headers={"Connection": "close"}, timeout=30) as client:
        while not stop.is_set():
            answers.append(one_answer(client))


def one_answer(client: httpx.Client) -> Answer:
    start = time.monotonic()
    try:
        response = client.post("/score", params={"model": MODEL}, files=FILES)
        status = response.status_code
        version = response.json()["version"] if status == 200 else None
    except httpx.HTTPError:
        status, version = 0, None
    return Answer(start, time.monotonic(), status, version)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The URL of `deepsvdd serve --workers 2` over versions 1 (pinned) and 2, and the
    workers' shared metrics directory."""
    models = tmp_path / "models"
    build_model(models, MODEL, 1, seed=5)
    build_model(models, MODEL, 2, seed=6)
    (models / MODEL / "default_version").write_text("1\n")
    port = free_port()
    metrics_dir = tmp_path / "prometheus"
    env = service_env(
        models,
        port,
        DEEPSVDD_ADMIN_TOKEN=ADMIN_TOKEN,
        **{MULTIPROC_ENV: str(metrics_dir)},
    )
    process = start_process(serve_argv(models, port), env, tmp_path / "server.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, WAIT_S, process)
        yield url, metrics_dir
    finally:
        stop_process(process, WAIT_S)


def change(url: str, method: str, path: str, body: dict[str, Any] | None) -> float:
    """Applies one admin change; the time from which every worker serves by it."""
    answer = httpx.request(
        method, f"{url}/admin/models/{MODEL}/{path}", json=body, headers=AUTH, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return time.monotonic() + SETTLE_S


def served(answers: list[Answer], start: float, end: float) -> list[int | None]:
    return [a.version for a in answers if a.start >= start and a.end <= end]


@pytest.mark.slow
def test_rollout_promotion_and_rollback_under_load_fail_no_request(
    server: tuple[str, Path],
) -> None:
    url, metrics_dir = server
    answers: list[Answer] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=load, args=(url, stop, answers)) for _ in range(LOAD_THREADS)
    ]
    for thread in threads:
        thread.start()
    try:
        phases: list[tuple[str, float, float]] = []
        start = time.monotonic()
        steps: list[tuple[str, str, str, dict[str, Any] | None]] = [
            ("canary", "PUT", "traffic", {"weights": {"1": 90, "2": 10}}),
            ("promoted", "POST", "promote", {"version": 2}),
            ("rolled back", "POST", "rollback", None),
        ]
        time.sleep(PHASE_S / 2)
        previous = ("before", start)
        for name, method, path, body in steps:
            changed = time.monotonic()
            phases.append((previous[0], previous[1], changed))
            previous = (name, change(url, method, path, body))
            time.sleep(PHASE_S)
        phases.append((previous[0], previous[1], time.monotonic()))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed: {failed[:5]}"
    share = {name: served(answers, begin, end) for name, begin, end in phases}
    assert set(share["before"]) == {1} and set(share["rolled back"]) == {1}
    assert set(share["promoted"]) == {2}
    canary = share["canary"]
    assert len(canary) >= 100, f"only {len(canary)} answers in the canary phase"
    tolerance = 4 * math.sqrt(CANARY_SHARE * (1 - CANARY_SHARE) / len(canary))  # 4 sd
    assert abs(canary.count(2) / len(canary) - CANARY_SHARE) < tolerance, canary.count(2)
    by_worker = per_process(metrics_dir, "deepsvdd_images_scored_total", model=MODEL, version="2")
    assert len([n for n in by_worker.values() if n > 0]) == WORKERS, by_worker
