"""What `deepsvdd inspect` shows of a model: its validated metadata, the centre and the drift
reference summarised."""

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


def summarise_reference(reference: list[float]) -> dict[str, object]:
    """The drift reference's size and range instead of its scores (`inspect --full`: all)."""
    return {
        "n": len(reference),
        "min": reference[0],
        "median": reference[len(reference) // 2],
        "max": reference[-1],
        "full": "deepsvdd inspect --full",
    }


def describe(model: str, models_dir: Path, full: bool = False) -> dict[str, Any]:
    """A model file's metadata as JSON values; unless `full`, the centre and the drift
    reference summarised."""
    _, meta = open_model(resolve_model_path(model, models_dir))
    shown = meta.model_dump(mode="json")
    if not full:
        shown["center"] = summarise_center(meta.center)
        if meta.score_reference is not None:
            shown["score_reference"] = summarise_reference(meta.score_reference)
    return shown
