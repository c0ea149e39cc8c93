"""Administration: hot reload of the model repository, behind a bearer token."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.deps import State
from service.errors import ApiError
from service.repository import RepositoryError
from service.schemas import LoadedVersion, Refusal, ReloadResponse

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", tags=["admin"])
_bearer = HTTPBearer(auto_error=False)


async def require_admin(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """404 without a configured token (no admin API at all), 401 without the right one."""
    expected = state.settings.admin_token
    if expected is None:
        raise ApiError(404, "not_found", "Not Found")
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise ApiError(
            401,
            "unauthorized",
            "a valid 'Authorization: Bearer <token>' header is required",
            {"WWW-Authenticate": "Bearer"},
        )


Admin = Annotated[None, Depends(require_admin)]


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={401: {"description": "Wrong or missing token"}, 404: {"description": "No token"}},
)
async def reload(request: Request, state: State, _: Admin) -> ReloadResponse:
    """Re-reads the models directory and swaps the new models in without failing a request."""
    try:
        repository, failures = await state.reload()
    except RepositoryError as exc:
        log.error("reload refused, the loaded models keep serving: %s", exc)
        raise ApiError(
            500, "reload_failed", "the models directory cannot be read; nothing changed"
        ) from exc
    if request.app.state.reload_sync is not None:  # several workers: the others follow
        request.app.state.reload_sync.announce()
    return ReloadResponse(
        loaded=[
            LoadedVersion(name=m.name, version=m.version, providers=list(m.providers))
            for m in repository.all()
        ],
        failures=[Refusal.of(f) for f in failures],
    )
