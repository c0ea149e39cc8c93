"""The Open Inference Protocol v2 (KServe, Triton) over REST, on the models, batchers, limits
and metrics that serve /score. Errors here take the protocol's form, `{"error": "..."}`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.deps import State, state_of
from service.errors import RETRY_AFTER_SECONDS, ApiError
from service.inference import infer as run_inference
from service.lookup import find_model
from service.oip import (
    EXTENSIONS,
    HEADER_LENGTH,
    decompress,
    infer_answer,
    model_config,
    model_metadata,
)
from service.state import ServiceState


def oip_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class OipRoute(APIRoute):
    """A route whose errors are the protocol's `{"error": "<message>"}`, with the status and
    headers the product API would give them; rejections are counted as there."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def protocol_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                state_of(request).metrics.count_rejection(exc.code)
                return oip_error(exc.status, exc.message, exc.headers)
            except RequestValidationError as exc:
                problems = "; ".join(str(e["msg"]) for e in exc.errors())
                return oip_error(422, problems or "invalid request parameters")
            except StarletteHTTPException as exc:
                return oip_error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

        return protocol_errors


router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=OipRoute)
_NOT_READY = {"Retry-After": str(RETRY_AFTER_SECONDS)}


@router.get("")
async def server_metadata(request: Request) -> dict[str, Any]:
    """Server metadata: name, version and the protocol extensions supported."""
    return {"name": "deepsvdd-serve", "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> dict[str, bool]:
    """200 `{"live": true}` while the process serves."""
    return {"live": True}


@router.get("/health/ready", response_model=None)
async def ready(state: State) -> dict[str, bool] | JSONResponse:
    """200 `{"ready": true}` once every model is loaded and warmed up; 503 `{"ready": false}`
    with the reason in `error` before, and while draining to stop."""
    if state.draining:
        return _not_ready("the server is draining before it stops", _NOT_READY)
    if not state.ready:
        error = state.unready_error()  # still loading, or loaded nothing (and why)
        return _not_ready(error.message, error.headers)
    return {"ready": True}


def _not_ready(message: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse({"ready": False, "error": message}, status_code=503, headers=headers)


@router.get("/models/{name}")
async def metadata(name: str, state: State) -> dict[str, Any]:
    """Model metadata of the latest version: inputs and outputs, -1 for the batch axis."""
    repository = state.deployment.repository
    model = find_model(repository, name)
    return model_metadata(model, repository.versions(name))


@router.get("/models/{name}/versions/{version}")
async def version_metadata(name: str, version: str, state: State) -> dict[str, Any]:
    """Model metadata of one version."""
    model = find_model(state.deployment.repository, name, version)
    return model_metadata(model, [model.version])


@router.get("/models/{name}/config")
async def config(name: str, state: State) -> dict[str, Any]:
    """The latest version's configuration, in Triton's ModelConfig JSON form."""
    model = find_model(state.deployment.repository, name)
    return model_config(model, state.settings.max_images)


@router.get("/models/{name}/versions/{version}/config")
async def version_config(name: str, version: str, state: State) -> dict[str, Any]:
    """One version's configuration, in Triton's ModelConfig JSON form."""
    model = find_model(state.deployment.repository, name, version)
    return model_config(model, state.settings.max_images)


@router.get("/models/{name}/ready")
async def model_ready(name: str, state: State) -> dict[str, Any]:
    """200 `{"name", "ready": true}` when the model is loaded and warmed up; 404 when it is not."""
    find_model(state.deployment.repository, name)
    return {"name": name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready")
async def version_ready(name: str, version: str, state: State) -> dict[str, Any]:
    """200 `{"name", "ready": true}` when that version is loaded and warmed up; 404 when not."""
    find_model(state.deployment.repository, name, version)
    return {"name": name, "ready": True}


async def _infer(request: Request, state: ServiceState, name: str, version: str | None) -> Response:
    async def read() -> tuple[bytes, str | None]:
        body = decompress(
            await request.body(),
            request.headers.get("content-encoding"),
            state.settings.max_body_bytes,
        )
        return body, request.headers.get(HEADER_LENGTH)

    done = await run_inference(state, name, version, read)
    answer = infer_answer(done.model, done.request, done.outputs, done.parameters)
    return Response(answer.body, media_type=answer.media_type, headers=answer.headers)


_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"},
        "parameters": {"type": "object"},
        "data": {"type": "array", "description": "row-major, flat or nested"},
    },
}
_INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {"type": "array", "items": _TENSOR},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                    },
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": f"the JSON header, {HEADER_LENGTH} bytes long, then the tensors",
            },
        },
    }
}


@router.post("/models/{name}/infer", openapi_extra=_INFER_DOC)
async def infer(name: str, request: Request, state: State) -> Response:
    """Scores the `image` FP32 tensor (JSON data or binary); outputs `score`, `embedding` and
    a patch model's `anomaly_map`, from one inference."""
    return await _infer(request, state, name, None)


@router.post("/models/{name}/versions/{version}/infer", openapi_extra=_INFER_DOC)
async def version_infer(name: str, version: str, request: Request, state: State) -> Response:
    """Inference on one version of the model."""
    return await _infer(request, state, name, version)


@router.api_route(
    "/{path:path}",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def unknown(path: str, request: Request) -> Response:
    """Every other /v2 path: 404, or 405 with `Allow` where the path exists with other methods."""
    allowed = sorted(
        method
        for route in router.routes
        if getattr(route, "endpoint", None) is not unknown
        and route.matches(request.scope)[0] is Match.PARTIAL
        for method in getattr(route, "methods", None) or ()
    )
    if allowed:
        return oip_error(
            405,
            f"{request.method} is not allowed on {request.url.path[:128]}",
            {"Allow": ", ".join(allowed)},
        )
    return oip_error(404, f"no route {request.url.path[:128]!r} in the protocol")
