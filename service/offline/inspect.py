"""What `deepsvdd inspect` shows of a model: its validated metadata, the centre summarised."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from modelfile.layout import open_model, resolve_model_path


def summarise_center(center: list[float], first: int = 4) -> dict[str, object]:
    """The centre in three lines instead of one per coordinate (`inspect --full` shows all)."""
    return {
        "dim": len(center),
        "norm": math.sqrt(sum(v * v for v in center)),
        "first": center[:first],
        "full": "deepsvdd inspect --full",
    }


def describe(model: str, models_dir: Path, full: bool = False) -> dict[str, Any]:
    """A model file's metadata as JSON values; unless `full`, the centre summarised."""
    _, meta = open_model(resolve_model_path(model, models_dir))
    shown = meta.model_dump(mode="json")
    if not full:
        shown["center"] = summarise_center(meta.center)
    return shown
