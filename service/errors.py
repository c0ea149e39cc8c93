"""Every error the API answers, as JSON `{"error": {"code", "message"}}`, and the handlers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

RETRY_AFTER_SECONDS = 1
# nginx's status for a request whose client left before it was answered.
CLIENT_CLOSED_REQUEST = 499
_CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_parameters",
    503: "unavailable",
}


class ApiError(Exception):
    """An error with its HTTP status, a stable machine-readable code and a message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class Unavailable(ApiError):
    """503 with `Retry-After`: the client should come back shortly."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(503, code, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES_BY_STATUS.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{_where(tuple(e['loc']))}: {e['msg']}" for e in exc.errors())
    return error_response(422, "invalid_parameters", problems or "invalid request parameters")


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    # Nobody reads this answer. Without it a client that cuts its upload short would be a
    # 500 with a traceback in the log and a 5xx in the request metrics: not the server's fault.
    return error_response(
        CLIENT_CLOSED_REQUEST, "client_closed", "the client closed the connection mid-request"
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, so uvicorn logs the traceback; the body names nothing.
    return error_response(500, "internal", "internal server error")


def install_error_handlers(app: FastAPI, on_error: Callable[[str], None]) -> None:
    """JSON errors for everything; `on_error` sees the code of every `ApiError` answered."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        on_error(exc.code)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
