"""Several workers reload together: the one that answers `POST /admin/reload` (or changes a
traffic policy) writes a new generation to a file in the workers' shared metrics directory,
and every other worker, which polls that file, reloads too (the policies alone, after a
policy change). One process (no shared directory) needs none of it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from service.metrics import MULTIPROC_ENV
from service.repository import RepositoryError
from service.state import ServiceState

log = logging.getLogger(__name__)
GENERATION_FILE = "reload-generation"  # not *.db: the metrics collector reads only those
POLL_S = 0.5
TRAFFIC_ONLY = "traffic"  # a generation's last word after a policy change


class ReloadSync:
    """One worker's side: announces its own reloads and follows the others'."""

    def __init__(self, state: ServiceState, directory: Path, poll_s: float = POLL_S) -> None:
        self._state = state
        self._path = directory / GENERATION_FILE
        self._poll_s = poll_s
        self._seen = self._read()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_environment(cls, state: ServiceState) -> ReloadSync | None:
        """A sync over the shared metrics directory when there is one (several workers)."""
        directory = os.environ.get(MULTIPROC_ENV)
        return cls(state, Path(directory)) if directory else None

    def _read(self) -> str:
        try:
            return self._path.read_text()
        except OSError:
            return ""

    def announce(self, *, traffic: bool = False) -> None:
        """After this worker reloaded (`traffic`: its policies alone): tell the others
        (atomically: no half-written token)."""
        token = f"{time.time_ns()} {os.getpid()}" + (f" {TRAFFIC_ONLY}" if traffic else "")
        partial = self._path.with_name(f"{GENERATION_FILE}.{os.getpid()}.tmp")
        partial.write_text(token)
        os.replace(partial, self._path)
        self._seen = token

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="follow-reloads")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            current = self._read()
            if current == self._seen:
                continue
            self._seen = current
            try:
                if current.endswith(f" {TRAFFIC_ONLY}"):
                    _, failures = await self._state.reload_traffic()
                else:
                    _, failures = await self._state.reload()
            except RepositoryError as exc:
                log.error("reload announced by another worker refused: %s", exc)
                continue
            except Exception:  # the task must live on, or this worker stops following
                log.exception("reload announced by another worker failed")
                continue
            log.info("reloaded as another worker did (%d refused)", len(failures))
