"""One Open Inference Protocol inference, whichever transport carries it (REST v2 or gRPC):
the model looked up, the request parsed and checked, the images scored, the outputs counted
and handed to the model's shadow version."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from modelfile import SCORE_OUTPUT
from service.errors import ApiError
from service.lookup import Version, serving, threshold_used
from service.oip import IS_ANOMALY_OUTPUT, InferRequest, parse_infer
from service.repository import LoadedModel
from service.state import ServiceState

# The request body in the binary tensor extension's form, and its JSON header's length.
BodyReader = Callable[[], Awaitable[tuple[bytes, str | None]]]


@dataclass(frozen=True)
class Inference:
    """What an answer is built from: the model that scored, the parsed request, every output
    the answer may hold by name, and the answer's `parameters` (the threshold used, if any)."""

    model: LoadedModel
    request: InferRequest
    outputs: dict[str, np.ndarray]
    parameters: dict[str, str | float] | None


async def infer(
    state: ServiceState, name: str | None, version: Version, read: BodyReader
) -> Inference:
    """Scores the `image` tensor of the request `read` returns, on `name` at `version`.

    The body is read inside the batcher's lease, so a reload waits for it; 503 while not
    ready, 404 for an unknown model or version, 4xx for a request the model cannot take."""
    batcher, model = serving(state, name, version)
    if state.tracing is not None:
        state.tracing.describe(model)
    with batcher.lease():
        body, header_length = await read()
        graph_outputs = model.outputs()
        parsed = parse_infer(
            body, header_length, model.metadata.input, state.settings.max_images, graph_outputs
        )
        used = threshold_used(model.metadata, parsed.threshold)
        extras = frozenset(n for n in graph_outputs if n != SCORE_OUTPUT and parsed.wants(n))
        scores, outputs = await batcher.infer(parsed.images, extras)
    if not np.isfinite(scores).all():
        raise ApiError(500, "inference_failed", f"model {model.name} gave a non-finite score")
    outputs = {
        **outputs,
        SCORE_OUTPUT: scores.astype(np.float32),
        IS_ANOMALY_OUTPUT: scores > used.value,
    }
    parameters: dict[str, str | float] | None = None
    if parsed.threshold is not None or parsed.wants(IS_ANOMALY_OUTPUT):
        parameters = {"threshold": used.name, "threshold_value": used.value}
    state.metrics.scored(model, scores, used.value)
    state.shadow(model, parsed.images, scores)
    return Inference(model, parsed, outputs, parameters)
