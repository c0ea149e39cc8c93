"""The metrics of one scored dataset: image AUROC per test class against test/good, the share
of each test class the model's own threshold flags, and the maps' pixel AUROC, PRO and
hottest-cell rate, per defect kind and over all kinds."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.defects.metrics import hottest_on_defect, image_auroc, pixel_auroc, pro, to_pixels
from bench.defects.plant import KINDS
from bench.defects.score import Scored
from modelfile.metadata import ModelMetadata
from modelfile.thresholds import share_above

OTHER = "other"


def image_metrics(good: Scored, tested: dict[str, Scored]) -> dict[str, float]:
    """Image AUROC of each test class against the good images, and of all defects pooled."""
    out = {kind: image_auroc(good.scores, s.scores) for kind, s in tested.items()}
    defects = np.concatenate([tested[k].scores for k in KINDS if k in tested])
    out["all_defects"] = image_auroc(good.scores, defects)
    return out


def at_threshold(good: Scored, tested: dict[str, Scored], meta: ModelMetadata) -> dict[str, Any]:
    """The model's default threshold (a quantile of its held-out normal crops' scores) and the
    share of each test class's images above it: on `good`, the false-alarm rate that the
    thresholds meet on normal crops from rows never trained on."""
    name = meta.default_threshold
    return {"name": name, **flagged_above(good, tested, meta.thresholds[name])}


def flagged_above(good: Scored, tested: dict[str, Scored], value: float) -> dict[str, Any]:
    """`value` and the share of the good images and of each test class's above it."""
    flagged = {"good": share_above(good.scores, value)}
    flagged |= {kind: share_above(s.scores, value) for kind, s in tested.items()}
    return {"value": value, "flagged": flagged}


def _at_image_size(scored: Scored) -> list[np.ndarray]:
    return [
        to_pixels(m, scored.cells, *mask.shape)
        for m, mask in zip(scored.maps, scored.masks, strict=True)
    ]


def map_metrics(good: Scored, kinds: list[Scored]) -> dict[str, float]:
    """Pixel AUROC and PRO over `kinds` and the good images, and the hottest-cell rate."""
    maps = _at_image_size(good) + [m for s in kinds for m in _at_image_size(s)]
    masks = good.masks + [m for s in kinds for m in s.masks]
    hits = [
        hottest_on_defect(g, s.cells, k)
        for s in kinds
        for g, k in zip(s.maps, s.masks, strict=True)
    ]
    return {
        "pixel_auroc": pixel_auroc(maps, masks),
        "pro_0.3": pro(maps, masks),
        "hottest_on_defect": float(np.mean(hits)),
    }


def evaluate(good: Scored, tested: dict[str, Scored], with_maps: bool) -> dict[str, Any]:
    """Every metric of one (surface, method, seed); map metrics when the maps were made."""
    result: dict[str, Any] = {"image_auroc": image_metrics(good, tested)}
    if with_maps:
        defects = [tested[k] for k in KINDS]
        result["maps"] = {
            "all_defects": map_metrics(good, defects),
            **{kind: map_metrics(good, [tested[kind]]) for kind in KINDS},
        }
    return result
