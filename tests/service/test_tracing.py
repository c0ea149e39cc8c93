"""Traces: off by default with no OpenTelemetry loaded; with OTEL_* set, the span tree of a
scoring request reaches an OTLP/HTTP receiver (decoded with opentelemetry-proto), in the
client's trace; an endpoint that does not answer costs the requests nothing."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from bench.harness.otlp import Receiver, receiving
from service.metrics import Metrics
from service.otel import OtelTracing, TraceIdFilter
from service.tracing import configured
from tests.support.images import image_bytes, noise_image
from tests.support.models import build_model
from tests.support.servers import free_port, make_settings, running_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
IMAGES = 3
# FastAPI imports the OpenTelemetry API itself (a no-op without an SDK); the SDK, the exporter
# and the service's tracing are loaded only when traces are configured.
LOADED_ONLY_WITH_TRACES = ("opentelemetry.sdk", "opentelemetry.exporter", "service.otel")


class SpanReceiver(Receiver):
    """An OTLP/HTTP trace receiver: keeps every span of every ExportTraceServiceRequest."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def take(self, path: str, body: bytes) -> bytes:
        request = ExportTraceServiceRequest.FromString(body)
        self.paths.append(path)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans.append(_decoded(span, service["service.name"]))
        return ExportTraceServiceResponse().SerializeToString()


def _decoded(span: Any, service: str) -> dict[str, Any]:
    values = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        values[a.key] = getattr(a.value, kind)
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent": span.parent_span_id.hex(),
        "attributes": values,
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "service": service,
    }


def score(client: httpx.Client, headers: dict[str, str] | None = None) -> None:
    files = [
        ("files", (f"{i}.png", image_bytes(noise_image(i)), "image/png")) for i in range(IMAGES)
    ]
    response = client.post("/score", files=files, headers=headers or {})
    assert response.status_code == 200, response.text


def test_traces_are_off_without_an_endpoint_and_load_no_sdk(tmp_path: Path) -> None:
    assert not configured({})
    assert configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_SDK_DISABLED": "true"})
    assert not configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_TRACES_EXPORTER": "none"})
    build_model(tmp_path / "models", "tiny", 1)
    script = (
        "import sys\n"
        f"LOADED_ONLY_WITH_TRACES = {LOADED_ONLY_WITH_TRACES!r}\n"
        "from fastapi.testclient import TestClient\n"
        "from service.app import create_app\n"
        "from tests.support.servers import make_settings\n"
        f"app = create_app(make_settings({str(tmp_path / 'models')!r}))\n"
        "with TestClient(app) as client:\n"
        "    assert client.get('/models').status_code in (200, 503)\n"
        "print(sorted(m for m in sys.modules if m.startswith(LOADED_ONLY_WITH_TRACES)))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_scoring_request_exports_its_span_tree_in_the_clients_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_model(tmp_path / "models", "tiny", 1)
    with receiving(SpanReceiver()) as otlp:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "scoring-test")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        with running_server(make_settings(tmp_path / "models")) as live, live.client() as client:
            score(client, {"traceparent": TRACEPARENT})
            client.get("/metrics")  # scrapes get no span
        spans = [s for s in otlp.spans if s["trace_id"] == TRACE_ID]
    assert set(otlp.paths) == {"/v1/traces"}
    by_name = {s["name"]: s for s in spans}
    assert sorted(by_name) == ["POST /score", "decode", "inference", "queue wait"]
    request = by_name["POST /score"]
    assert request["parent"] == CLIENT_SPAN
    assert request["service"] == "scoring-test"
    assert request["attributes"]["http.route"] == "/score"
    assert request["attributes"]["http.response.status_code"] == 200
    assert request["attributes"]["deepsvdd.model"] == "tiny"
    for name in ("decode", "queue wait", "inference"):
        child = by_name[name]
        assert child["parent"] == request["span_id"], name
        assert child["attributes"]["deepsvdd.model"] == "tiny"
        assert child["attributes"]["deepsvdd.version"] == 1
        assert request["start"] <= child["start"] <= child["end"] <= request["end"], name
    inference = by_name["inference"]["attributes"]
    assert inference["deepsvdd.batch.images"] >= IMAGES
    assert inference["deepsvdd.images"] == IMAGES
    assert by_name["queue wait"]["end"] == by_name["inference"]["start"]
    assert not any(s["name"].startswith("GET /metrics") for s in otlp.spans)


def dropped(text: str) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "deepsvdd_trace_spans_dropped_total"
    }


def test_an_endpoint_that_does_not_answer_costs_the_requests_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_model(tmp_path / "models", "tiny", 1)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    with running_server(make_settings(tmp_path / "models")) as live, live.client() as client:
        began = time.perf_counter()
        for _ in range(20):
            score(client)
        assert time.perf_counter() - began < 10.0
        end = time.monotonic() + 30.0
        while not dropped(client.get("/metrics").text).get("export_failed"):
            assert time.monotonic() < end, "no failed export counted within 30 s"
            time.sleep(0.2)
        # Each request answers as fast as without traces: nothing waits on the export.
        slowest = 0.0
        for _ in range(10):
            one = time.perf_counter()
            score(client)
            slowest = max(slowest, time.perf_counter() - one)
        assert slowest < 1.0


def test_log_lines_inside_a_request_carry_its_trace_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    tracing = OtelTracing(Metrics().spans_dropped)
    record = logging.LogRecord("service", logging.INFO, __file__, 1, "scored", None, None)
    try:
        with tracing.request_span("POST", "/score", {"traceparent": TRACEPARENT}):
            assert TraceIdFilter().filter(record)
    finally:
        tracing.provider.shutdown()
    assert record.getMessage().startswith(f"scored trace_id={TRACE_ID} span_id=")


def test_a_grpc_inference_joins_the_trace_of_its_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_model(tmp_path / "models", "tiny", 1)
    settings = make_settings(tmp_path / "models", grpc_port=free_port())
    images = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    with receiving(SpanReceiver()) as otlp:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        with running_server(settings):
            client = triton.InferenceServerClient(f"127.0.0.1:{settings.grpc_port}")
            tensor = triton.InferInput("image", list(images.shape), "FP32")
            tensor.set_data_from_numpy(images)
            client.infer("tiny", [tensor], headers={"traceparent": TRACEPARENT})
            client.close()
        spans = [s for s in otlp.spans if s["trace_id"] == TRACE_ID]
    by_name = {s["name"]: s for s in spans}
    rpc = by_name.pop("/inference.GRPCInferenceService/ModelInfer")
    assert rpc["parent"] == CLIENT_SPAN
    assert rpc["attributes"]["rpc.system"] == "grpc"
    assert rpc["attributes"]["deepsvdd.model"] == "tiny"
    assert sorted(by_name) == ["inference", "queue wait"]
    assert all(s["parent"] == rpc["span_id"] for s in by_name.values())
    assert by_name["inference"]["attributes"]["deepsvdd.images"] == 2
