"""`POST /admin/reload` with several workers: the one that answers reloads, the others follow.

Each worker has its own models in memory; a reload reaches whichever worker accepts the
connection. It announces the reload in the workers' shared directory, and the others,
which poll it, load the new version too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.metrics import MULTIPROC_ENV
from tests.deploy.test_workers import MODEL, WAIT_S, WORKERS, per_process, serve_argv, wait_until
from tests.support.models import build_model
from tests.support.processes import start_process, stop_process
from tests.support.servers import ADMIN_TOKEN, AUTH, free_port, service_env


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        stop_process(process, WAIT_S)


@pytest.mark.slow
def test_every_worker_serves_the_version_one_reload_found(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    models = tmp_path / "models"
    build_model(models, MODEL, 1, seed=5)
    metrics_dir = tmp_path / "prometheus"
    port = free_port()
    env = service_env(
        models,
        port,
        DEEPSVDD_DEFAULT_MODEL=MODEL,
        DEEPSVDD_ADMIN_TOKEN=ADMIN_TOKEN,
        **{MULTIPROC_ENV: str(metrics_dir)},
    )
    process = start_process(serve_argv(models, port), env, tmp_path / "server.log")
    processes.append(process)

    def serving(version: int) -> bool:
        found = per_process(metrics_dir, "deepsvdd_model_info", model=MODEL, version=str(version))
        return list(found.values()) == [1.0] * WORKERS

    wait_until(lambda: serving(1), "both workers did not load version 1", process)
    build_model(models, MODEL, 2, seed=6)
    answer = httpx.post(f"http://127.0.0.1:{port}/admin/reload", headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    assert {(m["name"], m["version"]) for m in answer.json()["loaded"]} == {(MODEL, 1), (MODEL, 2)}
    wait_until(lambda: serving(2), "the other worker did not follow the reload", process)
    assert (metrics_dir / "reload-generation").read_text().strip()
