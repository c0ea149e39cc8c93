"""Crash-safe training checkpoints: written atomically every few epochs, resumed with --resume.

A checkpoint holds only state dicts, tensors and plain values, and is loaded with
`weights_only=True`; its `key` ties it to one run's data and hyper-parameters.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(Exception):
    """A checkpoint exists but cannot be resumed (another run's, or unreadable)."""


class Checkpointer:
    def __init__(self, path: Path, key: dict[str, Any], every: int = 10, resume: bool = False):
        self.path = Path(path)
        self.key = json.dumps(key, sort_keys=True, default=str)
        self.every = max(1, every)
        self._saved: dict[str, Any] | None = self._read() if resume else None

    def _read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"checkpoint {self.path} is unreadable: {exc}") from exc
        if state.get("key") != self.key:
            raise CheckpointError(
                f"checkpoint {self.path} belongs to a run with other data or settings; "
                "delete it or train without --resume"
            )
        return state

    @property
    def phase(self) -> str | None:
        """The phase the resumed run was in: 'pretrain', 'train', or None for a fresh run."""
        return None if self._saved is None else str(self._saved["phase"])

    @property
    def saved(self) -> dict[str, Any] | None:
        """The state read for --resume (None for a fresh run)."""
        return self._saved

    def adopt(self, saved: dict[str, Any] | None) -> None:
        """Resumes from a state another process read (rank 0 reads, every rank resumes)."""
        self._saved = saved

    def load(self, phase: str) -> dict[str, Any] | None:
        if self._saved is None or self._saved["phase"] != phase:
            return None
        return self._saved

    def due(self, epoch: int, total: int) -> bool:
        """Whether to save after `epoch` (1-based): every few epochs and at the last."""
        return epoch % self.every == 0 or epoch == total

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        torch.save({**state, "key": self.key}, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()  # only when empty
