"""Child processes of the experiments and tests: started with their output in a log file,
stopped one way, on free loopback ports."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_process(
    argv: list[str], env: Mapping[str, str], log: Path, *, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """Starts `argv` in `cwd` with stdout and stderr appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`; returns the exit status.
    A process that has exited already is left as it is."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
