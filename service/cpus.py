"""How many CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota
(v2 `cpu.max`, v1 `cpu.cfs_quota_us`), as a container started with `cpus: 2` sets it."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 mounts the cpu controller under one of these names, depending on the distribution.
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (`taskset`, a cpuset), else all the host has."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu-controller path) of this process from /proc/self/cgroup."""
    v2 = v1 = None
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _candidates(base: Path, own: str | None) -> list[Path]:
    """`base/own` and each directory above it up to `base`: a limit set on a parent cgroup
    binds its children too. Inside a container's cgroup namespace `own` is just "/"."""
    relative = (own or "/").strip("/")
    here = base / relative if relative else base
    return [here, *[p for p in here.parents if p.is_relative_to(base)]]


def _v2_quota(root: Path, own: str | None) -> float | None:
    limits = []
    for directory in _candidates(root, own):
        fields = (_read(directory / "cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                quota, period = int(fields[0]), int(fields[1])
            except ValueError:
                continue
            if quota > 0 and period > 0:
                limits.append(quota / period)
    return min(limits) if limits else None


def _v1_quota(root: Path, own: str | None) -> float | None:
    limits = []
    for name in _V1_CPU_DIRS:
        for directory in _candidates(root / name, own):
            quota, period = (
                _read(directory / "cpu.cfs_quota_us"),
                _read(directory / "cpu.cfs_period_us"),
            )
            try:
                q, p = int(quota or ""), int(period or "")
            except ValueError:
                continue
            if q > 0 and p > 0:  # -1: no quota
                limits.append(q / p)
    return min(limits) if limits else None


def quota_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The cgroup CPU quota in CPUs (1.5 for `cpus: 1.5`), or None when there is none."""
    v2, v1 = _own_paths(proc_cgroup)
    found = [q for q in (_v2_quota(root, v2), _v1_quota(root, v1)) if q is not None]
    return min(found) if found else None


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """Whole CPUs this process can keep busy: the affinity mask, capped by the quota.

    A fractional quota rounds down (at least 1), as Go's automaxprocs does: sizing for 2
    CPUs under a 1.5 CPU quota gets every process throttled at the end of each period.
    """
    cpus = affinity_cpus()
    quota = quota_cpus(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return cpus
