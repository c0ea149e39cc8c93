"""Results files filled as an experiment goes: atomic writes, and JSON results that a resumed
run continues and that several processes (other classes or seeds) merge under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from modelfile.layout import write_atomic


def write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode())


def write_json(path: Path, data: Any, indent: int = 1) -> None:
    write_text(path, json.dumps(data, indent=indent) + "\n")


def save_figure(fig: Figure, path: Path, **savefig: Any) -> None:
    """`fig.savefig` to a temporary PNG beside `path`, then renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, **savefig)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_results(path: Path, fresh: dict[str, Any], resume: bool) -> dict[str, Any]:
    """`fresh` when there is no file; with `resume`, the file, if its schedule is `fresh`'s."""
    if not path.exists():
        return fresh
    if not resume:
        raise SystemExit(f"{path} exists; pass --resume to continue it, or move it away")
    results: dict[str, Any] = json.loads(path.read_text())
    if results.get("schedule") != fresh["schedule"]:
        raise SystemExit(
            f"{path} was written with schedule {results.get('schedule')}, not "
            f"{fresh['schedule']}; use another --out or the same flags"
        )
    return results


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Holds the lock file beside `path` (`<name>.lock`) for the block."""
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def merge_disk(
    path: Path, results: dict[str, Any], tables: tuple[str, ...], sets: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """Adds what the file holds now to `results` (call it under `locked`): the entries of each
    table, the members of each sorted set, the commands; returns the file's content."""
    if not path.exists():
        return None
    disk: dict[str, Any] = json.loads(path.read_text())
    for part in tables:
        results[part] = {**disk[part], **results[part]}
    for part in sets:
        results[part] = sorted({*disk[part], *results[part]})
    results["commands"] = list(dict.fromkeys([*disk["commands"], *results["commands"]]))
    return disk


def save_results(
    path: Path, results: dict[str, Any], tables: tuple[str, ...], sets: tuple[str, ...] = ()
) -> None:
    """Writes `results` merged with the file, under its lock, so that several processes given
    different classes or seeds can fill one file side by side."""
    with locked(path):
        merge_disk(path, results, tables, sets)
        write_json(path, results)
