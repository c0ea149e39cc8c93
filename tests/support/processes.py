"""Child processes of the tests: bench/harness/processes.py's, shared with the experiments."""

from __future__ import annotations

from bench.harness.processes import ROOT, start_process, stop_process

__all__ = ["ROOT", "start_process", "stop_process"]
