"""`inference.GRPCInferenceService` on the models, batchers, limits and metrics of the REST v2
route: the same lookups, validation and scoring, with errors as gRPC status codes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from modelfile import EMBEDDING_OUTPUT, SCORE_OUTPUT
from service.errors import CLIENT_CLOSED_REQUEST, ApiError
from service.metrics import REJECTION_REASONS
from service.oip import (
    EXTENSIONS,
    IS_ANOMALY_OUTPUT,
    InferRequest,
    model_config,
    model_metadata,
    parse_infer,
)
from service.oip_grpc.messages import SERVICE, ModelInferResponse, method_names, method_types
from service.oip_grpc.tensors import fill_answer, rest_body
from service.repository import LoadedModel
from service.routers.score import resolve_threshold
from service.routers.v2 import _model as find_model
from service.schemas import ThresholdUsed
from service.state import ServiceState

log = logging.getLogger(__name__)

SERVER_NAME = "deepsvdd-serve"
# The REST statuses of the errors the service raises, as gRPC codes. A request over a limit
# that no retry can lift (413) is INVALID_ARGUMENT; RESOURCE_EXHAUSTED is kept for shed load,
# which a retry may get through.
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def status_code(error: ApiError) -> grpc.StatusCode:
    """The gRPC code of a service error: RESOURCE_EXHAUSTED when the queue is full."""
    if error.code == "queue_full":
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return _CODES.get(error.status, grpc.StatusCode.INTERNAL)


def _model(state: ServiceState, name: str, version: str) -> LoadedModel:
    """The model the request names; the latest version when `version` is empty."""
    return find_model(state.deployment.repository, name, version or None)


class InferenceServicer:
    """The protocol's RPCs over one app's `ServiceState`."""

    def __init__(self, state: ServiceState, version: str) -> None:
        self.state = state
        self.version = version

    @property
    def serving(self) -> bool:
        """Ready and not draining to stop: what readiness and the health service report."""
        return self.state.ready and not self.state.draining

    async def ServerLive(self, request: Any) -> dict[str, Any]:
        return {"live": True}

    async def ServerReady(self, request: Any) -> dict[str, Any]:
        return {"ready": self.serving}

    async def ModelReady(self, request: Any) -> dict[str, Any]:
        """Ready when that version is loaded and warmed up; false (not an error) otherwise,
        as Triton answers."""
        try:
            _model(self.state, request.name, request.version)
        except ApiError:
            return {"ready": False}
        return {"ready": True}

    async def ServerMetadata(self, request: Any) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": self.version, "extensions": list(EXTENSIONS)}

    async def ModelMetadata(self, request: Any) -> dict[str, Any]:
        model = _model(self.state, request.name, request.version)
        repository = self.state.deployment.repository
        versions = [model.version] if request.version else repository.versions(model.name)
        return model_metadata(model, versions)

    async def ModelConfig(self, request: Any) -> dict[str, Any]:
        model = _model(self.state, request.name, request.version)
        return {"config": model_config(model, self.state.settings.max_images)}

    async def ModelInfer(self, request: Any) -> Any:
        """Scores the `image` FP32 tensor, raw or typed; outputs as the REST v2 route."""
        state = self.state
        if not state.ready:
            raise state.unready_error()
        deployment = state.deployment
        model = _model(state, request.model_name, request.model_version)
        batcher = deployment.batcher(model)
        with batcher.lease():
            body = rest_body(request)
            parsed = parse_infer(
                body.body, body.header_length, model.metadata.input, state.settings.max_images
            )
            used = resolve_threshold(model.metadata, parsed.threshold)
            scores, embeddings = await batcher.infer(
                parsed.images, embeddings=parsed.wants(EMBEDDING_OUTPUT)
            )
        if not np.isfinite(scores).all():
            raise ApiError(500, "inference_failed", f"model {model.name} gave a non-finite score")
        response = ModelInferResponse(model_name=model.name, model_version=str(model.version))
        tensors = _tensors(scores, embeddings, used.value)
        fill_answer(response, parsed, tensors, _parameters(parsed, used), raw=body.raw)
        state.metrics.scored(model, scores, used.value)
        return response


def _tensors(
    scores: np.ndarray, embeddings: np.ndarray | None, threshold: float
) -> dict[str, np.ndarray]:
    """Every output the answer may hold, by name, as the REST v2 route computes them."""
    tensors = {SCORE_OUTPUT: scores.astype(np.float32), IS_ANOMALY_OUTPUT: scores > threshold}
    if embeddings is not None:
        tensors[EMBEDDING_OUTPUT] = embeddings
    return tensors


def _parameters(parsed: InferRequest, used: ThresholdUsed) -> dict[str, str | float] | None:
    """The threshold used, when the request gave one or asked for the decision."""
    if parsed.threshold is None and not parsed.wants(IS_ANOMALY_OUTPUT):
        return None
    return {"threshold": used.name, "threshold_value": used.value}


def _handler(servicer: InferenceServicer, method: str, response_type: Any) -> Handler:
    """One RPC: its answer as a message, its `ApiError`s as status codes, and its duration in
    `deepsvdd_request_duration_seconds` (route: the RPC's path, status: the REST status class
    the same outcome has over HTTP)."""
    implementation = getattr(servicer, method)
    route = f"/{SERVICE}/{method}"
    metrics = servicer.state.metrics

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        status = 200
        try:
            answer = await implementation(request)
            if isinstance(answer, dict):
                return json_format.ParseDict(answer, response_type())
            return answer
        except ApiError as exc:
            status = exc.status
            if exc.code in REJECTION_REASONS:
                metrics.rejected.labels(exc.code).inc()
            await context.abort(status_code(exc), exc.message)
        except asyncio.CancelledError:
            status = CLIENT_CLOSED_REQUEST
            raise
        except Exception:
            status = 500
            log.exception("gRPC %s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error")
        finally:
            metrics.request_duration.labels(route, "POST", f"{status // 100}xx").observe(
                time.perf_counter() - started
            )

    return handle


def generic_handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """Every RPC of the service, with its message classes, for `add_generic_rpc_handlers`."""
    handlers = {}
    for method in method_names():
        request_type, response_type = method_types(method)
        handlers[method] = grpc.unary_unary_rpc_method_handler(
            _handler(servicer, method, response_type),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)
