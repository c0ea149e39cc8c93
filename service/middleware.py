"""Pure ASGI middleware: the request-body byte limit and the request metrics.

The body limit counts bytes as they arrive, so no route can be made to buffer an unlimited
body; its 413 is raised from `receive` inside the route, which labels it in the metrics.
Before any answer, the unread rest of a body is read and dropped (up to the limit again):
a socket closed with unread data is reset, and the client would lose the answer. A body
declared over the limit by Content-Length is refused at once instead, on a closing
connection: the answer goes out whole, then what the client still sends is dropped until it
pauses for `LINGER_S` (or sent the limit again), and only then does the connection close.
A body that stalls (no byte for `body_timeout_s`) ends in a 408 and a closed connection, so
a client that stops sending mid-upload cannot hold a request, its model lease and its socket
forever (uvicorn has no timeout of its own for a request body).
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError
from service.metrics import Metrics

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# After an answer to a body declared too large: how long a pause in the client's sending ends
# the drop of what it sends before the connection closes.
LINGER_S = 0.2


def body_too_large(limit: int, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(
        413, "body_too_large", f"the request body is over the limit of {limit} bytes", headers
    )


def body_timeout(seconds: float) -> ApiError:
    return ApiError(
        408,
        "body_timeout",
        f"no request body bytes arrived for {seconds:g} s; the request was abandoned",
        {"Connection": "close"},
    )


class _Body:
    """The request's `receive`, counting body bytes against the limit."""

    def __init__(
        self, receive: Receive, limit: int, declared: int | None, timeout_s: float
    ) -> None:
        self._receive = receive
        self.limit = limit
        self.timeout_s = timeout_s
        self.declared = declared
        self.received = 0
        self.done = False

    @property
    def declared_too_large(self) -> bool:
        return self.declared is not None and self.declared > self.limit

    async def receive(self) -> Message:
        if self.declared_too_large:
            raise body_too_large(self.limit, {"Connection": "close"})
        try:
            message = await self._next(self.timeout_s)
        except TimeoutError:
            self.done = True  # answer at once; the 408 closes the connection
            raise body_timeout(self.timeout_s) from None
        if self.received > self.limit:
            await self.drain(self.received + self.limit)
            raise body_too_large(self.limit)
        return message

    async def _next(self, timeout_s: float) -> Message:
        """The next message; TimeoutError when the body stalls for `timeout_s` (not once it is
        complete: later reads wait for the disconnect, as long as it takes)."""
        if self.done:
            return await self._receive()
        async with asyncio.timeout(timeout_s):
            message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.done = True
        return message

    async def drain(self, up_to: int, pause_s: float | None = None) -> None:
        """Reads and drops what the client still sends, until `up_to` body bytes in all or a
        pause of `pause_s` (default: the body timeout)."""
        while not self.done and self.received < up_to:
            try:
                await self._next(self.timeout_s if pause_s is None else pause_s)
            except TimeoutError:
                self.done = True  # a stalled client gets its answer without the rest


class BodyLimitMiddleware:
    """413 past `max_body_bytes`: at the first read when Content-Length says so (and any answer
    to such a request closes its connection), else as read; 408 when the body stalls for
    `body_timeout_s`."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        declared = int(length) if length.isdigit() else None
        body = _Body(receive, self.max_body_bytes, declared, self.body_timeout_s)
        if body.declared_too_large:
            await self.app(scope, body.receive, _closing_after_linger(body, send))
            return

        async def send_after_drain(message: Message) -> None:
            if message["type"] == "http.response.start" and not body.done:
                await body.drain(body.received + self.max_body_bytes)
            await send(message)

        await self.app(scope, body.receive, send_after_drain)


def _closing_after_linger(body: _Body, send: Send) -> Send:
    """`send` for a request whose body will not be read: the answer says `Connection: close`
    and goes out at once; its end waits while the client goes on sending (see `LINGER_S`)."""

    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            await send({**message, "more_body": True})
            await body.drain(body.received + body.limit, pause_s=LINGER_S)
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return send_closing


class RequestMetricsMiddleware:
    """Observes `deepsvdd_request_duration_seconds` by route template, method, status class."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.request_duration.labels(route, method, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )
