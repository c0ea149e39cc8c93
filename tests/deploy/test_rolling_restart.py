"""A rolling restart behind a real balancer loses nothing: two replicas behind Debian's haproxy
(health check GET /health/ready, no retries, as kube-proxy gives none), steady load, each
replica stopped with SIGTERM and started again in turn: every request answered 200.

What makes it work is the drain (`DEEPSVDD_DRAIN_S`): readiness fails while the replica still
serves, haproxy takes it out, and only then does the listener close. One replica runs two
uvicorn workers, where every worker drains on its own.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.harness.balancer import HAPROXY, balancing
from tests.support.images import image_bytes, noise_image
from tests.support.servers import free_port, service_env

ROOT = Path(__file__).resolve().parents[2]
DRAIN_S = "3"
CLIENTS = 3
WAIT_S = 60.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        HAPROXY is None, reason="haproxy is not installed (make install installs it)"
    ),
]


@dataclass
class Replica:
    name: str
    port: int
    workers: int
    models_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = service_env(
            self.models_dir, self.port, DEEPSVDD_DRAIN_S=DRAIN_S, DEEPSVDD_WORKERS=str(self.workers)
        )
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=log, stderr=log
            )
        end = time.monotonic() + WAIT_S
        while True:
            assert self.process.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < end, f"{self.name} never became ready"
            time.sleep(0.1)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=WAIT_S)


@dataclass
class Load:
    """Clients sending one request at a time each, until stopped; every outcome counted."""

    url: str
    outcomes: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, seed: int) -> None:
        body = image_bytes(noise_image(seed))
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    files = {"files": ("a.png", body, "image/png")}
                    outcome = str(client.post("/score", files=files).status_code)
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                self.outcomes[outcome] += 1


@pytest.fixture
def replicas(tiny_models_dir: Path, tmp_path: Path) -> Iterator[list[Replica]]:
    started = [
        Replica("a", free_port(), 1, tiny_models_dir, tmp_path / "a.log"),
        Replica("b", free_port(), 2, tiny_models_dir, tmp_path / "b.log"),
    ]
    try:
        yield started
    finally:
        for replica in started:
            # SIGTERM first: a SIGKILLed parent would leave its uvicorn workers running.
            if replica.process is not None and replica.process.poll() is None:
                replica.process.terminate()
                try:
                    replica.process.wait(timeout=WAIT_S)
                except subprocess.TimeoutExpired:
                    replica.process.kill()
                    replica.process.wait()


def test_rolling_restart_behind_haproxy_loses_no_request(
    replicas: list[Replica], tmp_path: Path
) -> None:
    for replica in replicas:
        replica.start()
    servers = {r.name: r.port for r in replicas}
    with balancing(servers, tmp_path, timeout_s=30) as balancer:
        load = Load(balancer.url)
        threads = [threading.Thread(target=load.run, args=(seed,)) for seed in range(CLIENTS)]
        try:
            for replica in replicas:
                balancer.wait_status(replica.name, "UP", WAIT_S)
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            for replica in replicas:
                assert replica.stop() == 0, replica.log.read_text()
                replica.start()
                balancer.wait_status(replica.name, "UP", WAIT_S)
                time.sleep(0.5)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(timeout=WAIT_S)
        final = balancer.stats()
    assert set(load.outcomes) == {"200"}, load.outcomes
    assert load.outcomes["200"] >= 50, load.outcomes
    for replica in replicas:
        # haproxy took each replica out (its readiness failed) and put it back.
        assert int(final[replica.name]["chkdown"]) >= 1, final[replica.name]
        assert int(final[replica.name]["stot"]) > 0, final[replica.name]
    assert int(final["BACKEND"]["econ"]) == 0 and int(final["BACKEND"]["eresp"]) == 0
