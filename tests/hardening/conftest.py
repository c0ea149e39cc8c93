"""Shared pieces of the hardening suite: error-body checks, a service in its own process whose
file descriptors, memory and threads can be read from /proc, raw-socket clients, and the
mixed traffic that both the short soak test and bench/soak.py send.

`check_error(response, *secrets)` is applied to every error answer the suite collects: the
SPEC's JSON form, no traceback, no server path. `served(models_dir, tmp_path, **env)` starts
`python -m service` and stops it with SIGTERM; `ServerProcess.fds()`, `.rss_bytes()` and
`.threads()` read the process from /proc.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.support import build_model, free_port, image_bytes, noise_image, service_env

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "hardening-admin-token-0042"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Nothing of the server's insides may reach a client: no traceback, no installation path.
LEAKS = ("Traceback", 'File "', "site-packages", "/usr/", str(ROOT))
# The error codes a client may cause; none of them is a 5xx.
CLIENT_STATUSES = frozenset({400, 401, 404, 405, 408, 413, 415, 422, 499, 503})


def check_error(response: httpx.Response, *secrets: str | Path) -> dict[str, str]:
    """The answer is `{"error": {"code", "message"}}` and names no server internals."""
    assert response.status_code >= 400, response.status_code
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    for needle in (*LEAKS, *(str(s) for s in secrets)):
        assert needle not in response.text, f"{needle!r} in {response.text!r}"
    return dict(error)


@dataclass(frozen=True)
class Repo:
    """A tiny model repository: `digits` v1 and v2 (1 x 28 x 28, L)."""

    path: Path


def write_repo(path: Path) -> Repo:
    build_model(path, "digits", 1, channels=1, seed=1)
    build_model(path, "digits", 2, channels=1, seed=2)
    return Repo(path)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A repository of the test's own, free to corrupt."""
    return write_repo(tmp_path / "models")


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return write_repo(tmp_path_factory.mktemp("models"))


def png(seed: int, size: tuple[int, int] = (28, 28)) -> bytes:
    return image_bytes(noise_image(seed, size))


def files(*seeds: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{s}.png", png(s), "image/png")) for s in seeds]


@dataclass
class ServerProcess:
    """`python -m service` on a loopback port; its stderr goes to `log`."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
        raise KeyError(f"/proc/{self.pid}/status has no {key}")

    def rss_bytes(self) -> int:
        return self._status("VmRSS") * 1024

    def threads(self) -> int:
        return self._status("Threads")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def settle_fds(self, limit: int, within_s: float = 15.0) -> int:
        """Polls until at most `limit` fds are open (closing sockets takes a moment)."""
        end = time.monotonic() + within_s
        count = self.fds()
        while count > limit and time.monotonic() < end:
            time.sleep(0.1)
            count = self.fds()
        return count


def hardened_env(models_dir: Path, port: int, **extra: str) -> dict[str, str]:
    return service_env(models_dir, port, DEEPSVDD_ADMIN_TOKEN=ADMIN_TOKEN, **extra)


@contextlib.contextmanager
def served(models_dir: Path, log_dir: Path, **env: str) -> Iterator[ServerProcess]:
    """Starts the service as a process, waits until ready, stops it with SIGTERM."""
    port = free_port()
    log = log_dir / f"service-{port}.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=hardened_env(models_dir, port, **env),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", port, log)
    try:
        end = time.monotonic() + 60
        while True:
            assert process.poll() is None, server.log_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.url}/health/ready", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < end, "the service never became ready"
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def raw_request(port: int, head: bytes, body: bytes = b"") -> socket.socket:
    """A connected socket that has sent `head` (request line and headers) and `body`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head + body)
    return sock


def post_head(target: str, content_type: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode("latin-1")


def read_response(sock: socket.socket) -> httpx.Response:
    """One HTTP/1.1 answer read off a raw socket (its body by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(name, value) for name, _, value in (line.partition(": ") for line in lines[1:])]
    length = int({name.lower(): value for name, value in headers}.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-answer"
        body += chunk
    return httpx.Response(int(lines[0].split(" ")[1]), headers=headers, content=body)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (waits up to the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def multipart(parts: list[tuple[str, bytes, str]], boundary: str = "hardening-b0undary") -> bytes:
    out = b""
    for name, data, media in parts:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: {media}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


MULTIPART = "multipart/form-data; boundary=hardening-b0undary"


@dataclass
class Traffic:
    """What the mixed traffic sent and got: (kind, status) counts, unexpected answers."""

    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.counts.values())

    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.counts.items() if status >= 500)


# kind -> the statuses it may get (503: shed by a full queue).
EXPECTED: dict[str, frozenset[int]] = {
    "good": frozenset({200, 503}),
    "bad_image": frozenset({400, 503}),
    "oversize": frozenset({413}),
    "wrong_type": frozenset({415}),
    "unknown_model": frozenset({404}),
    "reload": frozenset({200}),
    "read": frozenset({200}),
    "cut": frozenset({0}),
}


def _post_raw(client: httpx.Client, body: bytes, media: str) -> httpx.Response:
    return client.post("/score", content=body, headers={"content-type": media})


def _one(
    kind: str, client: httpx.Client, port: int, rng: random.Random, oversize: int
) -> httpx.Response | None:
    """Sends one request of `kind`; None for a request cut off mid-body (no answer)."""
    seed = rng.randrange(1 << 30)
    if kind == "good":
        return client.post("/score", files=files(*range(seed, seed + rng.randint(1, 4))))
    if kind == "bad_image":
        cut = png(seed)[: rng.randrange(8, 40)]
        return _post_raw(client, cut if rng.random() < 0.5 else rng.randbytes(900), "image/png")
    if kind == "oversize":
        return _post_raw(client, np.random.default_rng(seed).bytes(oversize), "image/png")
    if kind == "wrong_type":
        return _post_raw(client, b"{}", "text/json")
    if kind == "unknown_model":
        return client.post("/score", params={"model": "nope"}, files=files(seed))
    if kind == "reload":
        return client.post("/admin/reload", headers=AUTH)
    if kind == "read":
        return client.get(rng.choice(["/models", "/metrics", "/health/ready", "/health/live"]))
    body = multipart([("cut.png", png(seed), "image/png")])
    with raw_request(port, post_head("/score", MULTIPART, len(body)), body[: len(body) // 2]):
        return None  # closed mid-body


# How often each kind is sent, out of 100.
MIX = {"good": 55, "bad_image": 12, "oversize": 5, "wrong_type": 5, "unknown_model": 5}
MIX |= {"reload": 3, "read": 10, "cut": 5}


def mixed_traffic(
    server: ServerProcess,
    seconds: float,
    *,
    seed: int,
    oversize: int,
) -> Traffic:
    """One client thread's worth of mixed requests for `seconds` (`oversize`: a body over
    the server's limit)."""
    rng = random.Random(seed)
    kinds, weights = zip(*MIX.items(), strict=True)
    traffic = Traffic()
    end = time.monotonic() + seconds
    with httpx.Client(base_url=server.url, timeout=60) as client:
        while time.monotonic() < end:
            kind = rng.choices(kinds, weights)[0]
            response = _one(kind, client, server.port, rng, oversize)
            status = 0 if response is None else response.status_code
            traffic.counts[(kind, status)] += 1
            if status not in EXPECTED[kind]:
                traffic.unexpected.append(f"{kind} -> {status}")
            elif response is not None and status >= 400:
                try:
                    check_error(response)
                except AssertionError as exc:
                    traffic.unexpected.append(f"{kind} -> {status}: {exc}")
    return traffic


def merge(parts: list[Traffic]) -> Traffic:
    total = Traffic()
    for part in parts:
        total.counts.update(part.counts)
        total.unexpected.extend(part.unexpected)
    return total


def sample(server: ServerProcess) -> dict[str, Any]:
    return {"fds": server.fds(), "rss": server.rss_bytes(), "threads": server.threads()}
