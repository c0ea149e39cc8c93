"""The machine an experiment ran on, as its results record it: CPU model, flags and counts."""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpuinfo(key: str) -> str | None:
    """The first value of `key` in /proc/cpuinfo (None where there is no such file or key)."""
    lines = CPUINFO.read_text().splitlines() if CPUINFO.exists() else []
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    return (cpuinfo("flags") or "").split()


def cpu_line(threads: int) -> str:
    """'N CPUs (model), T torch thread(s)': the machine line of the training experiments."""
    return f"{os.cpu_count()} CPUs ({cpu_model()}), {threads} torch thread{'s' * (threads != 1)}"


def python_version() -> str:
    return platform.python_version()


def platform_name() -> str:
    return platform.platform()


def machine_record() -> dict[str, object]:
    """Python, CPUs, CPU model, load average now and platform: a results file's `machine`."""
    return {
        "python": python_version(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "platform": platform_name(),
    }
