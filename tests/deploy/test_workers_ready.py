"""Readiness answers for the whole server, not for whichever worker takes the connection: with
two workers and one of them not ready, every readiness probe answers 503.

A worker is made unready the way it happens in production: SIGTERM to that one worker, which
then drains (`DEEPSVDD_DRAIN_S`), not ready while it still serves, and exits; the supervisor
starts another, and the server is ready again once that one has loaded its models.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from service.metrics import Metrics
from service.oip_grpc.servicer import InferenceServicer
from service.state import ServiceState
from service.workers import CACHE_S, READY_PREFIX, ROSTER_FILE, WorkerReadiness
from tests.deploy.test_workers import WORKERS, server_process, wait_until
from tests.deploy.test_workers_die import ready, ready_server, roster
from tests.support.servers import make_settings

__all__ = ["server_process"]  # the fixture, shared with test_workers
DRAIN_S = 6.0
# The draining worker's readiness file goes within PUBLISH_S, the others read it at most
# CACHE_S later: probes start after this.
PROPAGATION_S = 1.0
PROBES = 20


def probe(url: str) -> tuple[int, int, str]:
    """/health/ready and /v2/health/ready on new connections (either worker may take each)."""
    health = httpx.get(f"{url}/health/ready", timeout=5)
    protocol = httpx.get(f"{url}/v2/health/ready", timeout=5)
    code = health.json().get("error", {}).get("code", "")
    return health.status_code, protocol.status_code, code


@pytest.mark.slow
def test_one_unready_worker_makes_every_probe_answer_503(
    tmp_path: Path, server_process: list[subprocess.Popen[bytes]]
) -> None:
    url, metrics_dir, process = ready_server(
        tmp_path, server_process, DEEPSVDD_DRAIN_S=str(DRAIN_S)
    )
    workers = roster(metrics_dir)
    assert len(workers) == WORKERS
    wait_until(
        lambda: all((metrics_dir / f"{READY_PREFIX}{pid}").exists() for pid in workers),
        "the workers did not publish their readiness",
        process,
    )

    os.kill(workers[0], signal.SIGTERM)
    stopped_at = time.monotonic()
    time.sleep(PROPAGATION_S)
    answers: list[tuple[int, int, str]] = []
    while len(answers) < PROBES and time.monotonic() - stopped_at < DRAIN_S - 0.5:
        answers.append(probe(url))
    assert len(answers) >= PROBES // 2, answers
    assert {(health, protocol) for health, protocol, _ in answers} == {(503, 503)}, answers
    # The worker that is still ready answered some of them (draining: the other one).
    assert "not_ready" in {code for _, _, code in answers}, answers

    def back() -> bool:
        now = roster(metrics_dir)
        return len(now) == WORKERS and workers[0] not in now and ready(url)

    wait_until(back, "the server was not ready again with a new worker", process)
    assert not (metrics_dir / f"{READY_PREFIX}{workers[0]}").exists()


def test_readiness_reads_the_roster_and_every_workers_file(tmp_path: Path) -> None:
    """The worker's side alone: its own state is published, the others' files are read."""
    mine = {"ready": False}
    readiness = WorkerReadiness(tmp_path, lambda: mine["ready"])
    other = os.getpid() + 1
    assert readiness.others_unready() == []  # no roster: one process, nothing to wait for
    (tmp_path / ROSTER_FILE).write_text(f"{os.getpid()}\n{other}\n")
    time.sleep(CACHE_S + 0.05)  # past the cache
    assert readiness.others_unready() == [other]
    (tmp_path / f"{READY_PREFIX}{other}").touch()
    assert readiness.others_unready() == [other]  # cached for a moment
    time.sleep(CACHE_S + 0.05)
    assert readiness.others_unready() == []
    readiness.publish()
    assert not (tmp_path / f"{READY_PREFIX}{os.getpid()}").exists()
    mine["ready"] = True
    readiness.publish()
    assert (tmp_path / f"{READY_PREFIX}{os.getpid()}").exists()


def test_grpc_readiness_is_the_servers_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gRPC `ServerReady` (and grpc.health.v1, which reads the same) waits for every worker."""
    monkeypatch.setattr(ServiceState, "serving", property(lambda self: True))
    state = ServiceState(make_settings(tmp_path), Metrics())
    state.workers = WorkerReadiness(tmp_path, lambda: True)
    servicer = InferenceServicer(state, "test")
    other = os.getpid() + 1
    (tmp_path / ROSTER_FILE).write_text(f"{os.getpid()}\n{other}\n")
    try:
        assert asyncio.run(servicer.ServerReady(None)) == {"ready": False}
        (tmp_path / f"{READY_PREFIX}{other}").touch()
        time.sleep(CACHE_S + 0.05)
        assert asyncio.run(servicer.ServerReady(None)) == {"ready": True}
    finally:
        state.decoder.close()
