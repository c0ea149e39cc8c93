"""The experiments of bench/: each sub-package but the harness, described by its docstring."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

NOT_EXPERIMENTS = frozenset({"harness"})


def experiments() -> dict[str, str]:
    """name -> the first line of its package docstring, in alphabetical order."""
    found = {}
    for module in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):
        if module.ispkg and module.name not in NOT_EXPERIMENTS:
            doc = importlib.import_module(f"bench.{module.name}").__doc__ or ""
            found[module.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return dict(sorted(found.items()))
