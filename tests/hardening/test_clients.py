"""Slow, broken and idle clients on raw sockets, and a short soak of mixed traffic.

The service runs as its own process, so its open file descriptors and threads are read
from /proc: after each abuse they must return to the baseline, whatever the client did.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.harness.traffic import Traffic, merge, mixed_traffic, sample
from tests.support.http import (
    MULTIPART,
    check_error,
    closed_by_server,
    multipart,
    post_head,
    raw_request,
    read_response,
)
from tests.support.images import files, png
from tests.support.metrics import metric_value, metric_value_or_zero
from tests.support.models import ModelRepo
from tests.support.servers import AUTH, ServerProcess, served

# Sockets the server may still hold a moment after their clients went (listener aside).
FD_SLACK = 2
THREAD_SLACK = 2


@pytest.fixture(scope="module")
def server(
    shared_repo: ModelRepo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log_dir = tmp_path_factory.mktemp("logs")
    with served(
        shared_repo.path, log_dir, DEEPSVDD_BODY_TIMEOUT_S="1", DEEPSVDD_MAX_BODY_BYTES="262144"
    ) as live:
        yield live


@pytest.fixture
def baseline(server: ServerProcess) -> int:
    """The server's fds once warm (one scored request), before the test's abuse."""
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/score", files=files(1)).status_code == 200
    return server.settle_fds(0, within_s=0.5)


def test_a_stalled_upload_times_out_while_others_are_served(
    server: ServerProcess, baseline: int
) -> None:
    body = multipart([("slow.png", png(3), "image/png")])
    stalled = raw_request(server.port, post_head("/score", MULTIPART, len(body)), body[:100])
    with stalled, httpx.Client(base_url=server.url, timeout=30) as client:
        # Served while the stalled upload is in flight, and after its timeout.
        for _ in range(3):
            assert client.post("/score", files=files(2)).status_code == 200
        response = read_response(stalled)
        assert response.status_code == 408
        assert check_error(response)["code"] == "body_timeout"
        assert response.headers["connection"] == "close" and closed_by_server(stalled)
        # The client never closed its end; the server let go of the socket all the same.
        assert server.settle_fds(baseline + FD_SLACK) <= baseline + FD_SLACK
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "deepsvdd_rejected_requests_total", reason="body_timeout") >= 1


@pytest.mark.parametrize("cut", ["after_headers", "mid_multipart", "mid_raw_image", "whole_body"])
def test_connections_cut_mid_request_leave_no_trace(
    server: ServerProcess, baseline: int, cut: str
) -> None:
    with httpx.Client(base_url=server.url) as client:
        before = client.get("/metrics").text
    image = png(4)
    body = multipart([("cut.png", image, "image/png")])
    head, sent = {
        "after_headers": (post_head("/score", MULTIPART, len(body)), b""),
        "mid_multipart": (post_head("/score", MULTIPART, len(body)), body[: len(body) // 2]),
        "mid_raw_image": (post_head("/score", "image/png", len(image)), image[:200]),
        "whole_body": (post_head("/score", MULTIPART, len(body)), body),
    }[cut]
    for _ in range(5):
        sock = raw_request(server.port, head, sent)
        time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # linger 0: a reset, the harshest cut
    time.sleep(0.5)
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/score", files=files(5)).status_code == 200
        after = client.get("/metrics").text
    labels = {"route": "/score", "method": "POST", "status": "5xx"}
    name = "deepsvdd_request_duration_seconds_count"
    # No 5xx series at all is the usual case: a histogram child appears at its first use.
    assert metric_value_or_zero(after, name, **labels) == metric_value_or_zero(
        before, name, **labels
    )
    assert "Traceback" not in server.log_text() and "Exception in ASGI" not in server.log_text()
    assert server.settle_fds(baseline + FD_SLACK) <= baseline + FD_SLACK


def test_hundreds_of_idle_connections_neither_block_nor_leak(
    server: ServerProcess, baseline: int
) -> None:
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    try:
        # A partial request line too: it must not hold anything but its own socket.
        idle[0].sendall(b"POST /score HTT")
        time.sleep(0.3)
        assert server.fds() >= baseline + 150  # the server really holds them
        with httpx.Client(base_url=server.url, timeout=30) as client:
            statuses = [client.post("/score", files=files(6, 7)).status_code for _ in range(3)]
            assert statuses == [200, 200, 200]
            assert client.get("/health/ready").status_code == 200
    finally:
        for sock in idle:
            sock.close()
    assert server.settle_fds(baseline + FD_SLACK) <= baseline + FD_SLACK


def _traffic(server: ServerProcess, seconds: float, clients: int) -> Traffic:
    results: list[Traffic] = []

    def client(seed: int) -> None:
        results.append(mixed_traffic(server, seconds, seed=seed, oversize=300_000))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    assert len(results) == clients
    return merge(results)


def test_short_soak_returns_to_the_baseline(server: ServerProcess, baseline: int) -> None:
    # The thread pools grow on first use; the warm-up lets them reach their size.
    warm_up = _traffic(server, 2.0, clients=3)
    start = sample(server)
    reloads: list[int] = []

    def reload_often() -> None:  # on top of the mix's own reloads
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(12):
                reloads.append(client.post("/admin/reload", headers=AUTH).status_code)
                time.sleep(0.5)

    reloader = threading.Thread(target=reload_often)
    reloader.start()
    traffic = _traffic(server, 7.0, clients=3)
    reloader.join(timeout=60)
    assert reloads == [200] * 12
    assert warm_up.unexpected == traffic.unexpected == []
    assert warm_up.server_errors() == traffic.server_errors() == 0
    assert {"good", "bad_image", "reload"} <= {kind for kind, _ in traffic.counts}
    assert traffic.requests > 30
    assert server.settle_fds(baseline + FD_SLACK) <= baseline + FD_SLACK
    # Reloads replace every batcher; the retired ones must give their threads back. A few
    # come and go (pools grow on demand, a new batcher starts its thread at its first run);
    # a leak would add one per reload, and there were more than a dozen.
    end = time.monotonic() + 10
    while server.threads() > start["threads"] + THREAD_SLACK and time.monotonic() < end:
        time.sleep(0.1)
    assert server.threads() <= start["threads"] + THREAD_SLACK
    assert "Traceback" not in server.log_text()


def test_an_unread_stalled_body_does_not_delay_the_answer_forever(server: ServerProcess) -> None:
    """A request refused before its body is read (unknown model) must not wait on the body."""
    body = multipart([("x.png", png(8), "image/png")])
    sock = raw_request(server.port, post_head("/score?model=nope", MULTIPART, len(body)), b"--")
    with sock:
        response = read_response(sock)
    assert response.status_code == 404
    assert check_error(response)["code"] == "model_not_found"


def test_a_flood_of_cut_connections_adds_no_threads(server: ServerProcess, baseline: int) -> None:
    """Each cut request is cheap for the client; the server must not grow a pool for it
    (a plain `def` dependency once put every request through AnyIO's 40 threads)."""
    threads = server.threads()
    body = multipart([("cut.png", png(9), "image/png")])
    head = post_head("/score", MULTIPART, len(body))
    end = time.monotonic() + 3
    sent = 0
    while time.monotonic() < end:
        with raw_request(server.port, head, body[: len(body) // 2]):
            sent += 1
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/score", files=files(10)).status_code == 200
    assert sent > 100
    assert server.threads() <= threads + THREAD_SLACK
    assert server.settle_fds(baseline + FD_SLACK, within_s=30) <= baseline + FD_SLACK
