"""A patch model's ONNX Runtime runs are capped so that the (images x patches x coreset)
distance matrix of its graph stays about PATCH_RUN_BYTES; whole-image models take max_batch."""

from __future__ import annotations

from typing import Any

import pytest

from modelfile.metadata import ModelMetadata
from service.repository import PATCH_RUN_BYTES, LoadedModel
from tests.support.patch_models import PATCH_RECORD, patch_metadata


def loaded(patch: dict[str, Any] | None) -> LoadedModel:
    meta = patch_metadata("p", 1, [0.0] * 6, {"q0.95": 1.0}, 1)
    if patch is None:
        meta = {**meta, "kind": "image", "patch": None}
    else:
        meta = {**meta, "patch": {**PATCH_RECORD, **patch}}
    return LoadedModel("p", 1, ModelMetadata.model_validate(meta), session=None, providers=())


@pytest.mark.parametrize(
    ("grid", "coreset", "want"),
    [
        ((29, 29), 2048, PATCH_RUN_BYTES // (29 * 29 * 2048 * 4)),  # 128 px: 9 images a run
        ((125, 125), 2048, 1),  # 512 px: one image a run, never none
        ((8, 12), 1, 64),  # a tiny map: max_batch
    ],
)
def test_patch_runs_hold_the_distance_matrix_to_its_budget(
    grid: tuple[int, int], coreset: int, want: int
) -> None:
    model = loaded({"grid": list(grid), "coreset": coreset, "bank": coreset})
    assert model.images_per_run(64) == want
    assert want == 9 or grid != (29, 29)


def test_whole_image_models_run_max_batch() -> None:
    assert loaded(None).images_per_run(64) == 64
    assert loaded(None).images_per_run(7) == 7
