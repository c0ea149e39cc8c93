"""`inference.GRPCInferenceService` on the models, batchers, limits and metrics of the REST v2
route: the same lookups, validation and scoring, with errors as gRPC status codes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format

from service.errors import CLIENT_CLOSED_REQUEST, ApiError
from service.inference import infer
from service.lookup import find_model
from service.oip import (
    EXTENSIONS,
    model_config,
    model_metadata,
)
from service.oip_grpc.messages import SERVICE, ModelInferResponse, method_names, method_types
from service.oip_grpc.tensors import fill_answer, rest_body
from service.repository import LoadedModel
from service.state import ServiceState
from service.tracing import rpc_span

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
        raw = bool(request.raw_input_contents)

        async def read() -> tuple[bytes, str | None]:
            body = rest_body(request)
            return body.body, body.header_length

        done = await infer(self.state, request.model_name, request.model_version or None, read)
        response = ModelInferResponse(
            model_name=done.model.name, model_version=str(done.model.version)
        )
        fill_answer(response, done.request, done.outputs, done.parameters, raw=raw)
        return response


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
            with rpc_span(servicer.state.tracing, route, context.invocation_metadata()):
                answer = await implementation(request)
            if isinstance(answer, dict):
                return json_format.ParseDict(answer, response_type())
            return answer
        except ApiError as exc:
            status = exc.status
            metrics.count_rejection(exc.code)
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
