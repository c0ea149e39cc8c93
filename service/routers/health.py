"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import State
from service.errors import RETRY_AFTER_SECONDS, error_response
from service.schemas import HealthStatus

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=HealthStatus)
async def live(state: State) -> HealthStatus:
    """Answers 200 while the process serves."""
    return HealthStatus(status="live", models=state.deployment.repository.names())


@router.get(
    "/ready",
    response_model=HealthStatus,
    responses={
        503: {
            "description": "`not_ready` with Retry-After while the models load; `no_models` "
            "(no Retry-After) once loading found nothing to serve, the message says why"
        }
    },
)
async def ready(state: State) -> HealthStatus | JSONResponse:
    """Answers 200 once every served model has answered a warm-up inference, else 503 (and
    503 while draining before a stop)."""
    if state.draining:
        message = "the service is draining before it stops"
        return error_response(503, "draining", message, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    if not state.ready:
        error = state.unready_error()
        return error_response(error.status, error.code, error.message, error.headers)
    return HealthStatus(status="ready", models=state.deployment.repository.names())
