"""The resident memory of a process and every process below it (Ray's raylet, GCS and
workers are children of the driver that started them), read from /proc while it runs."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process readable now."""
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(entry.name)] = int(fields[1])
    return found


def _rss(pid: int) -> int:
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError):
        return 0


def _is_worker(pid: int) -> bool:
    """A Ray worker (an actor or a task): `ray::...` or default_worker.py on its command line."""
    try:
        cmdline = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.startswith(b"ray::") or b"default_worker.py" in cmdline


def descendants(root: int) -> list[int]:
    parents = _parents()
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


@dataclass
class Peaks:
    """Peak RSS in bytes: the driver, the Ray workers together, everything together."""

    driver: int = 0
    workers: int = 0
    total: int = 0


class Sampler:
    """Samples the tree under `root` every `period_s` in a thread until `stop`."""

    def __init__(self, root: int, period_s: float = 0.25) -> None:
        self.root, self.period_s, self.peaks = root, period_s, Peaks()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.period_s):
            tree = descendants(self.root)
            sizes = {pid: _rss(pid) for pid in tree}
            workers = sum(size for pid, size in sizes.items() if _is_worker(pid))
            self.peaks.driver = max(self.peaks.driver, sizes[self.root])
            self.peaks.workers = max(self.peaks.workers, workers)
            self.peaks.total = max(self.peaks.total, sum(sizes.values()))

    def stop(self) -> Peaks:
        self._done.set()
        self._thread.join()
        return self.peaks
