"""The drain on SIGTERM (`DEEPSVDD_DRAIN_S`), seen by a client talking to one replica directly:
readiness fails at once while scoring goes on and every request is answered, answers close
their connection, and after the drain the process exits 0 and connections are refused.

The moment the listener closes, a connection the kernel has just accepted can still be reset:
no server can avoid that for a client that keeps connecting. That is why the drain exists:
balancers and Kubernetes endpoints stop routing here while it lasts (tests/deploy).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.images import image_bytes, noise_image
from tests.support.models import ModelRepo
from tests.support.servers import free_port, service_env

ROOT = Path(__file__).resolve().parents[2]
DRAIN_S = 2.0
FILES = {"files": ("a.png", image_bytes(noise_image(3)), "image/png")}


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def replica(
    request: pytest.FixtureRequest, model_repo: ModelRepo
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = service_env(
        model_repo.path, port, DEEPSVDD_DRAIN_S=str(DRAIN_S), DEEPSVDD_WORKERS=str(request.param)
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1].decode()
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < end, "the service never became ready"
            time.sleep(0.1)
        yield process, url
    finally:
        # SIGTERM first: a SIGKILLed parent would leave its uvicorn workers running.
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()


@pytest.mark.slow
def test_sigterm_drains_before_the_listener_closes(
    replica: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = replica
    outcomes: Counter[str] = Counter()
    closing: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post("/score", params={"model": "digits"}, files=FILES)
                    outcomes[str(response.status_code)] += 1
                    closing.append(response.headers.get("connection", ""))
                except httpx.TransportError as exc:
                    outcomes[type(exc).__name__] += 1

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.5)
    before = sum(outcomes.values())
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    with httpx.Client(base_url=url, timeout=5) as probe:
        # With several workers uvicorn's supervisor passes the signal on within half a second.
        while (ready := probe.get("/health/ready")).status_code == 200:
            assert time.monotonic() - signalled < 1.0, "readiness did not fail at once"
            time.sleep(0.02)
        v2_ready = probe.get("/v2/health/ready")
        live = probe.get("/health/live")
    # Load until shortly before the drain ends, then stop before the listener closes.
    stop.wait(max(0.0, signalled + DRAIN_S - 0.5 - time.monotonic()))
    stop.set()
    thread.join(timeout=30)
    assert time.monotonic() - signalled < DRAIN_S, "the load ran past the drain"
    assert process.wait(timeout=60) == 0
    assert (ready.status_code, v2_ready.status_code, live.status_code) == (503, 503, 200)
    assert ready.json()["error"]["code"] == "draining"
    assert set(outcomes) == {"200"}, outcomes
    assert sum(outcomes.values()) > before, "requests were answered during the drain"
    assert "close" in closing and closing[-1] == "close", "answers while draining close"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health/live", timeout=2)
