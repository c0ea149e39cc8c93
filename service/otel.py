"""The OpenTelemetry side of `service.tracing`: the SDK, the OTLP/HTTP exporter and the spans.

Imported only when OTEL_* configures tracing: the packages are installed with the service,
loaded by nothing while traces are off.
Export is batched in a bounded queue with a short timeout, off the request path; spans that
never reach the endpoint are counted in `deepsvdd_trace_spans_dropped_total`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context, get_current
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue
from prometheus_client import Counter

from service.repository import LoadedModel

MAX_QUEUE = 2048  # spans waiting for export; beyond, the oldest are dropped (and counted)
EXPORT_TIMEOUT_S = 2.0  # unless OTEL_EXPORTER_OTLP_TIMEOUT / ..._TRACES_TIMEOUT says otherwise
TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
DEFAULT_SERVICE_NAME = "deepsvdd-serve"
# The SDK logs a warning for every span a full queue drops: with an endpoint down under load,
# a line per span. deepsvdd_trace_spans_dropped_total counts them instead.
QUEUE_LOGGER = "opentelemetry.sdk._shared_internal"


class _CountingExporter(SpanExporter):
    """The OTLP exporter; the spans of a failed export are counted as dropped."""

    def __init__(self, exporter: SpanExporter, dropped: Counter, queue: _QueueCount) -> None:
        self._exporter, self._dropped, self._queue = exporter, dropped, queue

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._queue.taken(len(spans))
        result = self._exporter.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self._dropped.labels("export_failed").inc(len(spans))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class _QueueCount:
    """Spans handed to the batch processor and not yet taken by an export: when it is full,
    the processor drops one span for each new one, which is counted here."""

    def __init__(self, capacity: int, dropped: Counter) -> None:
        self._capacity, self._dropped = capacity, dropped
        self._waiting = 0
        self._lock = threading.Lock()

    def added(self) -> None:
        with self._lock:
            if self._waiting >= self._capacity:
                self._dropped.labels("queue_full").inc()
            else:
                self._waiting += 1

    def taken(self, count: int) -> None:
        with self._lock:
            self._waiting = max(0, self._waiting - count)


class _Counted(SpanProcessor):
    """The batch processor, with each ended span counted into the queue on its way in."""

    def __init__(self, inner: SpanProcessor, queue: _QueueCount) -> None:
        self._inner, self._queue = inner, queue

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._queue.added()
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _export_timeout() -> float:
    return next(
        (float(os.environ[v]) for v in TIMEOUT_VARIABLES if os.environ.get(v)), EXPORT_TIMEOUT_S
    )


class TraceIdFilter(logging.Filter):
    """Adds ` trace_id=... span_id=...` to a record logged inside a span."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid and not hasattr(record, "trace_id"):
            trace_id = trace.format_trace_id(context.trace_id)
            record.trace_id = trace_id  # marks the record as done
            span_id = trace.format_span_id(context.span_id)
            record.msg = f"{record.msg} trace_id={trace_id} span_id={span_id}"
        return True


class OtelTracing:
    """A tracer provider of this process exporting over OTLP/HTTP (endpoint, headers, sampler
    and resource from the standard OTEL_* variables), and the spans the service makes."""

    def __init__(self, dropped: Counter) -> None:
        service = os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        queue = _QueueCount(MAX_QUEUE, dropped)
        exporter = _CountingExporter(OTLPSpanExporter(timeout=_export_timeout()), dropped, queue)
        batches = BatchSpanProcessor(exporter, max_queue_size=MAX_QUEUE)
        self.provider.add_span_processor(_Counted(batches, queue))
        self.tracer = self.provider.get_tracer("deepsvdd-serve")
        logging.getLogger(QUEUE_LOGGER).setLevel(logging.ERROR)
        self._log_filter = TraceIdFilter()

    @contextlib.contextmanager
    def request_span(self, method: str, path: str, headers: dict[str, str]) -> Iterator[Any]:
        """The request's SERVER span, in the trace of the client's `traceparent` if any."""
        parent = propagate.extract(headers)
        attributes = {"http.request.method": method, "url.path": path}
        with self.tracer.start_as_current_span(
            f"{method} {path}", context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            yield span

    @contextlib.contextmanager
    def rpc_span(self, route: str, metadata: dict[str, str]) -> Iterator[Any]:
        """A gRPC call's SERVER span, in the trace of the `traceparent` metadata if any."""
        attributes = {"rpc.system": "grpc", "rpc.method": route}
        with self.tracer.start_as_current_span(
            route, context=propagate.extract(metadata), kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            yield span

    @contextlib.contextmanager
    def span(self, name: str, model: LoadedModel) -> Iterator[None]:
        """A child span of the current one (decode, say), with the model and version."""
        attributes: dict[str, AttributeValue] = {
            "deepsvdd.model": model.name,
            "deepsvdd.version": model.version,
        }
        with self.tracer.start_as_current_span(name, attributes=attributes):
            yield

    def describe(self, model: LoadedModel) -> None:
        """Names the model and version that serve the current request on its span."""
        span = trace.get_current_span()
        span.set_attribute("deepsvdd.model", model.name)
        span.set_attribute("deepsvdd.version", model.version)

    def capture(self) -> Context | None:
        """The current context, if a span is recording in it: the parent of batch spans."""
        return get_current() if trace.get_current_span().is_recording() else None

    def batch_spans(
        self,
        parents: list[tuple[Context, int, int]],
        model: LoadedModel,
        started_ns: int,
        ended_ns: int,
    ) -> None:
        """Each request's `queue wait` and `inference` spans of one shared run: children of
        its request span, timed from its arrival and the run, with the run's batch size."""
        attributes: dict[str, AttributeValue] = {
            "deepsvdd.model": model.name,
            "deepsvdd.version": model.version,
            "deepsvdd.batch.images": sum(images for _, _, images in parents),
            "deepsvdd.batch.requests": len(parents),
        }
        for parent, enqueued_ns, images in parents:
            own: dict[str, AttributeValue] = {**attributes, "deepsvdd.images": images}
            for name, start, end in (
                ("queue wait", enqueued_ns, started_ns),
                ("inference", started_ns, ended_ns),
            ):
                span = self.tracer.start_span(name, parent, attributes=own, start_time=start)
                span.end(end_time=end)

    def install_log_filter(self) -> None:
        """Trace ids on the service's and uvicorn's log lines (their handlers exist by now)."""
        for name in ("", "service", "uvicorn", "uvicorn.error"):
            for handler in logging.getLogger(name).handlers:
                handler.addFilter(self._log_filter)

    def shutdown(self) -> None:
        """Exports what is queued (bounded by the export timeout) and stops the processor."""
        for name in ("", "service", "uvicorn", "uvicorn.error"):
            for handler in logging.getLogger(name).handlers:
                handler.removeFilter(self._log_filter)
        self.provider.shutdown()
