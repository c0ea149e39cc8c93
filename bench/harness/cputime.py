"""CPU time of processes from Linux /proc: a server and its workers, and what else ran on the
machine while an experiment measured."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

OTHERS_SHOWN = 5  # the busiest other commands named under "what else ran"


@dataclass(frozen=True)
class Proc:
    """One process from /proc: its parent and the CPU time it has used so far."""

    ppid: int
    cpu_s: float


def process_table() -> dict[int, Proc]:
    """Every process now running (Linux /proc): user + system CPU seconds and parent."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it has just exited
            continue
        table[int(entry.name)] = Proc(int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def descendants(table: dict[int, Proc], root: int) -> set[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid, proc in table.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by `pid` and its descendants (a server's workers)."""
    table = process_table()
    return sum(table[p].cpu_s for p in descendants(table, pid) if p in table)


def command_name(pid: int) -> str:
    """A short name: the program, and for an interpreter its script or module."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "?"
    name = Path(words[0]).name
    if name.startswith("python") and len(words) > 1:
        name += " " + (words[2] if words[1] == "-m" and len(words) > 2 else Path(words[1]).name)
    return name


def other_processes(before: dict[int, Proc], wall_s: float) -> dict:
    """CPU time that processes outside this benchmark's tree used since `before`, by name."""
    after = process_table()
    ours = descendants(after, os.getpid())
    by_name: dict[str, float] = {}
    for pid, proc in after.items():
        if pid in ours:
            continue
        used = proc.cpu_s - (before[pid].cpu_s if pid in before else 0.0)
        if used > 0:
            name = command_name(pid)
            by_name[name] = by_name.get(name, 0.0) + used
    top = sorted(by_name.items(), key=lambda item: -item[1])[:OTHERS_SHOWN]
    return {"cpu_s": sum(by_name.values()), "wall_s": wall_s, "top": top}
