"""Request traces, off unless the standard OTEL_* variables name an OTLP endpoint.

Only then are the OpenTelemetry SDK and exporter imported (`service.otel`): with tracing off no
OpenTelemetry module is loaded and the request path pays a `None` check. The spans: the
request (joining the trace of a client's W3C `traceparent`), `decode`, and per request a
`queue wait` and an `inference` span. One ONNX Runtime run serves several requests, so each
request gets its own `inference` span timed from the shared run, a child of its own request
span, with the run's batch size (`deepsvdd.batch.images`, `deepsvdd.batch.requests`): every
request's tree is whole, and the run's spans share start and end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.repository import LoadedModel

if TYPE_CHECKING:
    from service.otel import OtelTracing

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Requests that get no span: scrapes and probes, many and uninteresting.
UNTRACED_PREFIXES = ("/metrics", "/health")


def configured(env: Mapping[str, str] = os.environ) -> bool:
    """An OTLP endpoint is set, and neither the SDK nor the traces exporter is turned off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(env.get(name) for name in ENDPOINT_VARIABLES)


def from_environment(dropped: Counter) -> OtelTracing | None:
    """The process's tracing when OTEL_* configures it, else None."""
    if not configured():
        return None
    from service.otel import OtelTracing  # the SDK, loaded only when asked for

    return OtelTracing(dropped)


def span(
    tracing: OtelTracing | None, name: str, model: LoadedModel
) -> contextlib.AbstractContextManager[None]:
    """A child span of the request's, or nothing at all with tracing off."""
    return contextlib.nullcontext() if tracing is None else tracing.span(name, model)


def rpc_span(
    tracing: OtelTracing | None, route: str, metadata: Iterable[Any] | None
) -> contextlib.AbstractContextManager[Any]:
    """A gRPC call's SERVER span (its `traceparent` metadata honoured), or nothing."""
    if tracing is None:
        return contextlib.nullcontext()
    headers = {str(key): str(value) for key, value in metadata or ()}
    return tracing.rpc_span(route, headers)


class TracingMiddleware:
    """The SERVER span of each HTTP request but scrapes and probes (added with tracing on)."""

    def __init__(self, app: ASGIApp, tracing: OtelTracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(UNTRACED_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self.tracing.request_span(scope["method"], path, headers) as request_span:

            async def send_noting_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    request_span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_noting_status)
            route = getattr(scope.get("route"), "path", None)
            if route is not None:
                request_span.set_attribute("http.route", route)
                request_span.update_name(f"{scope['method']} {route}")
