"""Several uvicorn workers answer as one server: the supervisor lists its live workers in the
shared metrics directory and buries a dead worker's live gauges; each worker publishes there
whether it is ready, and readiness is the server's only when every listed worker is."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from socket import socket

from prometheus_client.multiprocess import mark_process_dead
from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess

from service.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)
ROSTER_FILE = "workers"  # the supervisor's live worker pids, one a line (not *.db)
READY_PREFIX = "ready-"  # `ready-<pid>` exists while that worker is ready
PUBLISH_S = 0.2
CACHE_S = 0.2


def _replace_text(path: Path, text: str) -> None:
    """Writes `text` to `path` through a rename: a reader never sees half of it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


def clear_stale(directory: Path) -> None:
    """Removes what the workers of an earlier run left: its roster and readiness files."""
    (directory / ROSTER_FILE).unlink(missing_ok=True)
    for path in directory.glob(f"{READY_PREFIX}*"):
        path.unlink(missing_ok=True)


def bury(directory: Path, pid: int) -> None:
    """A worker died: its live gauges stop counting (its counters and histograms stay in
    the sums), and its readiness file goes."""
    mark_process_dead(pid, str(directory))
    (directory / f"{READY_PREFIX}{pid}").unlink(missing_ok=True)
    log.info("worker %d is gone: its live gauges are marked dead", pid)


class Supervisor(Multiprocess):
    """uvicorn's supervisor (which replaces a worker that dies) that also keeps the roster
    of live workers and buries the dead ones, after every check and every signal handled."""

    def __init__(self, config: Config, sockets: list[socket], directory: Path) -> None:
        super().__init__(config, sockets)
        self.directory = directory
        self._roster: list[int] = []

    def init_processes(self) -> None:
        super().init_processes()
        self._update_roster()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._update_roster()

    def handle_signals(self) -> None:
        super().handle_signals()
        self._update_roster()

    def _update_roster(self) -> None:
        current = [p.pid for p in self.processes if p.pid is not None]
        if current == self._roster:
            return
        for pid in set(self._roster) - set(current):
            bury(self.directory, pid)
        self._roster = current
        _replace_text(self.directory / ROSTER_FILE, "".join(f"{pid}\n" for pid in current))


class WorkerReadiness:
    """One worker's side: publishes its own readiness, and names the listed workers that are
    not ready (read at most every CACHE_S, so a probe costs a stat or two)."""

    def __init__(self, directory: Path, is_ready: Callable[[], bool]) -> None:
        self._directory = directory
        self._is_ready = is_ready
        self._pid = os.getpid()
        self._own = directory / f"{READY_PREFIX}{self._pid}"
        self._published = False
        self._checked_at = -CACHE_S
        self._unready: list[int] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_environment(cls, is_ready: Callable[[], bool]) -> WorkerReadiness | None:
        """Readiness over the shared metrics directory when there is one (several workers)."""
        directory = os.environ.get(MULTIPROC_ENV)
        return cls(Path(directory), is_ready) if directory else None

    def others_unready(self) -> list[int]:
        """The other listed workers that are not ready; none without a roster (one process)."""
        now = time.monotonic()
        if now - self._checked_at >= CACHE_S:
            self._checked_at = now
            self._unready = [pid for pid in self._roster() if not self._is_published(pid)]
        return self._unready

    def _roster(self) -> list[int]:
        try:
            text = (self._directory / ROSTER_FILE).read_text()
        except OSError:
            return []
        return [int(line) for line in text.split() if line.isdigit() and int(line) != self._pid]

    def _is_published(self, pid: int) -> bool:
        return (self._directory / f"{READY_PREFIX}{pid}").exists()

    def publish(self) -> None:
        """Creates or removes this worker's readiness file when its readiness changed."""
        ready = self._is_ready()
        if ready == self._published:
            return
        if ready:
            self._own.touch()
        else:
            self._own.unlink(missing_ok=True)
        self._published = ready

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_publishing(), name="publish-readiness")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._own.unlink(missing_ok=True)
        self._published = False

    async def _keep_publishing(self) -> None:
        while True:
            try:
                self.publish()
            except OSError:  # the task must live on, or this worker's readiness freezes
                log.exception("cannot publish this worker's readiness")
            await asyncio.sleep(PUBLISH_S)
