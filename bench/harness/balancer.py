"""Debian's haproxy in front of service replicas, as a Kubernetes Service with readiness
probes: health check `GET /health/ready` (every 200 ms unless told), no retries (kube-proxy
gives none)."""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness.processes import free_port

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)
START_S = 10.0

CONFIG = """\
global
    stats socket {socket} mode 600 level admin
defaults
    mode http
    retries 0
    timeout connect 2s
    timeout client {timeout_s}s
    timeout server {timeout_s}s
    timeout check 2s
frontend web
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter {check_every} fall 2 rise 2
{servers}
"""


@dataclass
class Balancer:
    """A running haproxy: its frontend port and its stats socket."""

    process: subprocess.Popen[bytes]
    port: int
    stats_socket: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend: server name (and BACKEND) -> its CSV row."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == "replicas"}

    def wait_status(self, name: str, status: str, within_s: float = 60.0) -> None:
        """Polls until haproxy's health checks see server `name` as `status` (UP, DOWN)."""
        end = time.monotonic() + within_s
        while self.stats()[name]["status"] != status:
            if time.monotonic() > end:
                raise TimeoutError(f"haproxy did not see {name} {status} within {within_s} s")
            time.sleep(0.05)


@contextlib.contextmanager
def balancing(
    servers: dict[str, int], work_dir: Path, check_every: str = "200ms", timeout_s: int = 60
) -> Iterator[Balancer]:
    """haproxy on a free port over `servers` (name -> loopback port), until the block ends;
    health checks every `check_every`, client and server timeouts of `timeout_s`."""
    if HAPROXY is None:
        raise SystemExit("haproxy is not installed (make install installs it)")
    stats_socket, port = work_dir / "haproxy.sock", free_port()
    lines = "\n".join(f"    server {name} 127.0.0.1:{p} check" for name, p in servers.items())
    config = work_dir / "haproxy.cfg"
    config.write_text(
        CONFIG.format(
            socket=stats_socket,
            port=port,
            servers=lines,
            check_every=check_every,
            timeout_s=timeout_s,
        )
    )
    process = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        end = time.monotonic() + START_S
        while not stats_socket.exists():
            if process.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"haproxy did not start (exit status {process.poll()})")
            time.sleep(0.05)
        yield Balancer(process, port, stats_socket)
    finally:
        process.terminate()
        process.wait(timeout=10)
