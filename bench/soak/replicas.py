"""The soak's service replicas: `python -m service` with several workers each, stopped and
started again for rolling restarts, and sampled from /proc over the whole process tree
(the supervisor and its workers)."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.harness.processes import ROOT, start_process
from bench.harness.servers import ADMIN_TOKEN, AUTH, wait_ready
from bench.harness.servers import service_env as base_env

STOP_S = 60.0


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it, from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in children.read_text().split())
            except OSError:  # the task ended while being read
                continue
    return found


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(f"/proc/{pid}/status has no {key}")


def tree_sample(pid: int) -> dict[str, int]:
    """RSS (bytes), open files and threads, summed over `pid`'s process tree; a process that
    ends while it is read is left out."""
    totals = {"rss": 0, "fds": 0, "threads": 0, "processes": 0}
    for member in descendants(pid):
        try:
            rss, threads = _status(member, "VmRSS") * 1024, _status(member, "Threads")
            fds = len(list(Path(f"/proc/{member}/fd").iterdir()))
        except (OSError, KeyError):  # gone, or a zombie without VmRSS
            continue
        totals["rss"] += rss
        totals["fds"] += fds
        totals["threads"] += threads
        totals["processes"] += 1
    return totals


@dataclass
class Replica:
    """One replica on a fixed loopback port, which it keeps across restarts."""

    name: str
    port: int
    models_dir: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the replica and waits until it is ready (every worker has its models)."""
        env = base_env(self.models_dir, self.port, DEEPSVDD_ADMIN_TOKEN=ADMIN_TOKEN, **self.env)
        self.process = start_process([sys.executable, "-m", "service"], env, self.log, cwd=ROOT)
        wait_ready(self.url, STOP_S, self.process)

    def stop(self) -> int:
        """SIGTERM (the replica drains, then exits); SIGKILL only if it hangs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def restart(self) -> int:
        """Stops and starts the replica; returns the old process's exit status."""
        status = self.stop()
        self.start()
        self.restarts += 1
        return status

    def reload(self) -> int:
        """`POST /admin/reload` on this replica directly; its status (0: no answer)."""
        try:
            return httpx.post(f"{self.url}/admin/reload", headers=AUTH, timeout=60).status_code
        except httpx.TransportError:
            return 0

    def sample(self) -> dict[str, int] | None:
        """The process tree's RSS, files and threads; None while it is not running."""
        if self.process is None or self.process.poll() is not None:
            return None
        return tree_sample(self.process.pid)
