"""The request head's limits and a body declared too large, over raw sockets against the
service as a process (`python -m service`, one worker and two): 431 for headers too large or
too many, 414 for a long target, 413 at once for a declared oversize body; JSON every time."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.http import check_error, closed_by_server, post_head, raw_request, read_response
from tests.support.models import ModelRepo
from tests.support.servers import ServerProcess, served


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def server(
    request: pytest.FixtureRequest, shared_repo: ModelRepo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log_dir = tmp_path_factory.mktemp("logs")
    with served(shared_repo.path, log_dir, DEEPSVDD_WORKERS=str(request.param)) as process:
        yield process


def _send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Sends `data` from a thread (the server may answer and close before it is all sent)."""

    def send() -> None:
        with contextlib.suppress(OSError):  # the server closed the connection: that is the point
            sock.sendall(data)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _answer(port: int, head: bytes) -> tuple[httpx.Response, socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sender = _send_in_background(sock, head)
    response = read_response(sock)
    sender.join(timeout=10)
    return response, sock


def _service_pids(server: ServerProcess) -> list[int]:
    """The serving processes: the server and its workers, with several."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    return [server.pid, *(int(p) for p in children.read_text().split())]


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def _peak_growth(pids: list[int], before: dict[int, int]) -> int:
    """Bytes by which each process's peak resident memory rose over its resident memory before."""
    return sum(max(0, _status_kib(pid, "VmHWM") - before[pid]) for pid in pids) * 1024


def test_an_8_mb_header_is_refused_unread(server: ServerProcess) -> None:
    pids = _service_pids(server)
    for pid in pids:  # resets the peak resident memory (VmHWM) to the current one
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = {pid: _status_kib(pid, "VmRSS") for pid in pids}
    head = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (8 << 20)
    response, sock = _answer(server.port, head)
    assert response.status_code == 431
    assert check_error(response)["code"] == "headers_too_large"
    assert response.headers["connection"] == "close"
    assert closed_by_server(sock)
    # Read whole, as plain uvicorn does, the header raises the peak by about 16 MB.
    assert _peak_growth(pids, before) < 4 << 20, "the header was read whole"


def test_ten_thousand_headers_are_refused(server: ServerProcess) -> None:
    lines = b"".join(b"X-H%d: 1\r\n" % i for i in range(10_000))
    head = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"\r\n"
    response, sock = _answer(server.port, head)
    assert response.status_code == 431
    assert check_error(response)["code"] == "too_many_headers"
    assert closed_by_server(sock)


def test_a_long_query_string_gets_414_in_json(server: ServerProcess) -> None:
    head = b"GET /models?q=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    response, _ = _answer(server.port, head)
    assert response.status_code == 414
    assert check_error(response)["code"] == "uri_too_long"


def test_a_request_that_is_not_http_gets_400_in_json(server: ServerProcess) -> None:
    response, _ = _answer(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert response.status_code == 400
    assert check_error(response)["code"] == "bad_request"


def test_headers_within_the_limits_are_served(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        headers = {f"X-H{i}": "v" * 200 for i in range(50)}
        assert client.get("/health/live", headers=headers).status_code == 200


def test_a_body_declared_too_large_is_refused_at_once(server: ServerProcess) -> None:
    started = time.monotonic()
    head = post_head("/score", "image/png", 10**12)
    sock = raw_request(server.port, head, b"\0" * 391)
    sock.settimeout(5)
    response = read_response(sock)
    answered = time.monotonic() - started
    assert response.status_code == 413
    assert check_error(response)["code"] == "body_too_large"
    assert answered < 0.5, f"answered after {answered:.2f} s"
    assert closed_by_server(sock)
    assert time.monotonic() - started < 1.0, "the connection stayed open"
