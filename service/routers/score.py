"""Scoring: POST /score with multipart `files` parts or one raw image body."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request, Response

from modelfile import ANOMALY_MAP_OUTPUT
from service.batching import Batcher
from service.decode_pool import Decoded
from service.decoding import MEDIA_TYPES
from service.deps import State
from service.errors import ApiError
from service.explain import COST, explain_answers, explain_batch, grid_maps
from service.lookup import serving, threshold_used
from service.repository import LoadedModel
from service.schemas import ScoreResponse, ThresholdUsed
from service.state import ServiceState
from service.tracing import span
from service.uploads import FILES_FIELD, Upload, read_uploads

router = APIRouter(prefix="/score", tags=["scoring"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILES_FIELD],
                    "properties": {
                        FILES_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        }
                    },
                }
            },
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(MEDIA_TYPES)},
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "At least one image scored; an image that could not be decoded has "
        "an `error` {code, message} in place of `score` and `is_anomaly`"
    },
    400: {"description": "No image could be scored (each one's reason in the message)"},
    404: {"description": "Unknown model or version"},
    413: {"description": "Body or image count over the limits, or the one image too large"},
    415: {"description": "Unsupported media type"},
    422: {"description": "Bad query parameters"},
    503: {
        "description": "Queue full or models loading (Retry-After), or no model to serve "
        "(`no_models`, the message says why)"
    },
}


# How many images' reasons the 400 for a request with none scored spells out.
_SHOWN_FAILURES = 5


def _none_scored(decoded: Decoded) -> ApiError:
    """The error when no image decoded: a lone image's own one, else a 400 naming each."""
    errors = list(decoded.errors.values())
    if len(errors) == 1:
        return errors[0]
    shown = "; ".join(e.message for e in errors[:_SHOWN_FAILURES])
    more = len(errors) - _SHOWN_FAILURES
    tail = f"; and {more} more" if more > 0 else ""
    return ApiError(
        400, "no_image_scored", f"none of the {len(errors)} images could be scored: {shown}{tail}"
    )


def _answer(
    model: LoadedModel,
    used: ThresholdUsed,
    uploads: list[Upload],
    decoded: Decoded,
    scores: np.ndarray,
    maps: list[dict[str, object]] | None = None,
) -> Response:
    """The `ScoreResponse` body, serialised directly.

    The dicts have the fields of `ScoreResponse` (the documented schema; a test compares the
    two), built from values already of the right types: validating them again through
    pydantic, and encoding them with the standard json module, cost more per request than
    scoring the images (orjson is far cheaper; bench/serving/serving.md has the figures).
    """
    scored = decoded.scored
    if not np.isfinite(scores).all():
        bad = next(u.what for u, s in zip(scored, scores, strict=True) if not math.isfinite(s))
        raise ApiError(500, "inference_failed", f"the model gave a non-finite score for {bad}")
    threshold = used.value
    results: list[dict[str, Any]] = [
        {"index": u.index, "filename": u.filename, "score": s, "is_anomaly": s > threshold}
        for u, s in zip(scored, scores.tolist(), strict=True)
    ]
    for result, anomaly_map in zip(results, maps or (), strict=False):
        result["anomaly_map"] = anomaly_map
    if decoded.errors:
        results.extend(
            {
                "index": i,
                "filename": uploads[i].filename,
                "error": {"code": e.code, "message": e.message},
            }
            for i, e in decoded.errors.items()
        )
        results.sort(key=lambda r: int(r["index"]))
    body = {
        "model": model.name,
        "version": model.version,
        "threshold": {"name": used.name, "value": threshold},
        "results": results,
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def _explained(
    batcher: Batcher, images: np.ndarray
) -> tuple[np.ndarray, list[dict[str, object]]]:
    """Scores and maps: from the graph's `anomaly_map` in the same run where the model has
    one, else by occlusion (`COST` inferences an image)."""
    if batcher.model.map_shape is not None:
        scores, outputs = await batcher.infer(images, frozenset({ANOMALY_MAP_OUTPUT}))
        cells, patch = outputs[ANOMALY_MAP_OUTPUT], batcher.model.metadata.patch
        return scores, await asyncio.to_thread(grid_maps, images, cells, patch)
    # Off the loop: the copies are many times the images (COST per image).
    batch, grid = await asyncio.to_thread(explain_batch, images)
    return await asyncio.to_thread(explain_answers, images, await batcher.score(batch), grid)


def _check_explain_count(state: ServiceState, count: int) -> None:
    """A request with occlusion maps costs `COST` inferences an image: bounded apart from
    plain scoring."""
    limit = min(state.settings.max_explain_images, state.budget.capacity // COST)
    if count > limit:
        raise ApiError(
            413,
            "too_many_images",
            f"{count} images with explain=true, over the limit of {limit} "
            f"(each map costs {COST} inferences)",
        )


@router.post("", response_model=ScoreResponse, openapi_extra=_BODY_DOC, responses=_ERRORS)
async def score(
    request: Request,
    state: State,
    model: Annotated[
        str | None, Query(max_length=64, description="Model name; default: the configured one")
    ] = None,
    version: Annotated[
        int | None,
        Query(
            ge=1,
            le=2**31,
            description="Model version; default: drawn by the model's traffic.json weights, "
            "else its default_version file, else the latest",
        ),
    ] = None,
    threshold: Annotated[
        str | None,
        Query(max_length=64, description="A threshold name of the model, or a number"),
    ] = None,
    explain: Annotated[
        bool,
        Query(
            description="Add an anomaly map to each result: the graph's own for a patch model "
            f"(the same inference), else by occlusion ({COST} inferences each)"
        ),
    ] = False,
) -> Response:
    """Scores images: a higher score is further from the normal class's centre.

    Each result has either a score or, for an image that could not be decoded, its own error.
    """
    batcher, found = serving(state, model, version)
    used = threshold_used(found.metadata, threshold)
    if state.tracing is not None:
        state.tracing.describe(found)
    with batcher.lease():
        uploads = await read_uploads(request, state.settings.max_images)
        if explain and found.map_shape is None:
            _check_explain_count(state, len(uploads))
        with span(state.tracing, "decode", found):
            decoded = await state.decoder.decode(
                uploads, found.metadata.input, found.metadata.decode
            )
        if decoded.errors:
            state.metrics.images_failed_with(found, [e.code for e in decoded.errors.values()])
        if not decoded.scored:
            raise _none_scored(decoded)
        maps = None
        if explain:
            scores, maps = await _explained(batcher, decoded.images)
        else:
            scores = await batcher.score(decoded.images)
    answer = _answer(found, used, uploads, decoded, scores, maps)
    state.metrics.scored(found, scores, used.value)
    state.shadow(found, decoded.images, scores)
    return answer
