"""The Open Inference Protocol over gRPC through Triton's own client, `tritonclient.grpc` (sync
and asyncio), against a live server: health, metadata, config, inference raw and typed with
the scores of /score, status codes, the health service, metrics, and the wire format."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

import service.repository
from modelfile.metadata import InputSpec
from modelfile.pixels import to_input
from service.decoding import decode_pixels
from service.metrics import Metrics
from service.oip_grpc.messages import DESCRIPTOR_SET, POOL
from service.oip_grpc.server import grpc_listener
from service.state import ServiceState
from tests.support.images import image_bytes, noise_image
from tests.support.metrics import metric_value
from tests.support.models import ModelRepo
from tests.support.servers import LiveServer, free_port, make_settings, running_server, wait_ready

DIGITS = InputSpec(channels=1, height=28, width=28, color="L")
INFER_ROUTE = "/inference.GRPCInferenceService/ModelInfer"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def live(model_repo: ModelRepo) -> Iterator[LiveServer]:
    settings = make_settings(model_repo.path, default_model="digits", grpc_port=free_port())
    with running_server(settings) as server:
        yield server


def grpc_url(server: LiveServer) -> str:
    return f"127.0.0.1:{server.app.state.service.settings.grpc_port}"


@pytest.fixture(scope="module")
def oip(live: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(grpc_url(live))
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(live: LiveServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    """Triton's generated stub: requests the high-level client never builds (typed data)."""
    with grpc.insecure_channel(grpc_url(live)) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def pngs(count: int) -> list[bytes]:
    return [image_bytes(noise_image(seed, (28, 28), "L")) for seed in range(count)]


def tensor(images: list[bytes]) -> np.ndarray:
    """The `image` tensor of PNGs, decoded by the service's own decoding."""
    return to_input(
        [decode_pixels(data, f"image {i}", DIGITS, 40_000_000) for i, data in enumerate(images)]
    )


def score_route(client: httpx.Client, images: list[bytes]) -> np.ndarray:
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    response = client.post("/score", params={"model": "digits"}, files=files)
    assert response.status_code == 200, response.text
    return np.array([r["score"] for r in response.json()["results"]])


def image_input(batch: np.ndarray, datatype: str = "FP32") -> triton.InferInput:
    entry = triton.InferInput("image", list(batch.shape), datatype)
    entry.set_data_from_numpy(batch)
    return entry


def typed_request(batch: np.ndarray, **fields: object) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="digits", **fields)
    entry = request.inputs.add(name="image", datatype="FP32", shape=batch.shape)
    entry.contents.fp32_contents.extend(batch.reshape(-1).tolist())
    return request


def code_of(call: Callable[[], object]) -> tuple[str, str]:
    """The status code and message of the error `call` ends in."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    return str(caught.value.status()), caught.value.message()


def health(url: str, service: str = "") -> int:
    with grpc.insecure_channel(url) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    return int(answer.status)


def test_health_metadata_and_config(oip: triton.InferenceServerClient) -> None:
    assert oip.is_server_live() and oip.is_server_ready()
    meta = oip.get_server_metadata(as_json=True)
    assert meta["name"] == "deepsvdd-serve" and "model_configuration" in meta["extensions"]
    assert oip.is_model_ready("digits") and oip.is_model_ready("digits", "1")
    assert not oip.is_model_ready("digits", "7") and not oip.is_model_ready("nope")
    model = oip.get_model_metadata("digits")
    assert (model.name, list(model.versions), model.platform) == (
        "digits",
        ["1", "2"],
        "onnxruntime_onnx",
    )
    (image,) = model.inputs
    assert (image.name, image.datatype, list(image.shape)) == ("image", "FP32", [-1, 1, 28, 28])
    assert [(o.name, list(o.shape)) for o in model.outputs] == [
        ("score", [-1]),
        ("embedding", [-1, 8]),
    ]
    assert list(oip.get_model_metadata("digits", "1").versions) == ["1"]
    config = oip.get_model_config("colour").config
    assert (config.name, config.max_batch_size, config.backend) == ("colour", 256, "onnxruntime")
    (colour,) = config.input
    assert model_config_pb2.DataType.Name(colour.data_type) == "TYPE_FP32"
    assert list(colour.dims) == [3, 32, 32]
    score, embedding = config.output
    assert score.name == "score" and score.HasField("reshape") and list(embedding.dims) == [8]
    assert config.HasField("dynamic_batching")


def test_raw_infer_gives_the_scores_of_the_score_route(
    oip: triton.InferenceServerClient, live: LiveServer
) -> None:
    images = pngs(5)
    result = oip.infer("digits", [image_input(tensor(images))], request_id="r-1")
    scores = result.as_numpy("score")
    assert scores.dtype == np.float32 and scores.shape == (5,)
    assert result.as_numpy("embedding").shape == (5, 8)
    response = result.get_response()
    assert (response.id, response.model_version) == ("r-1", "2")
    assert len(response.raw_output_contents) == 2, "raw inputs get raw outputs"
    with live.client() as client:
        np.testing.assert_allclose(scores, score_route(client, images), rtol=0, atol=1e-5)


def test_typed_infer_gives_typed_outputs(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, live: LiveServer
) -> None:
    images = pngs(3)
    request = typed_request(tensor(images))
    request.outputs.add(name="score")
    response = stub.ModelInfer(request, timeout=30)
    assert not response.raw_output_contents
    (score,) = response.outputs
    assert (score.name, score.datatype, list(score.shape)) == ("score", "FP32", [3])
    with live.client() as client:
        np.testing.assert_allclose(
            score.contents.fp32_contents, score_route(client, images), rtol=0, atol=1e-5
        )
    named = typed_request(tensor(images))
    named.parameters["threshold"].string_param = "q0.95"
    answer = stub.ModelInfer(named, timeout=30)
    assert answer.parameters["threshold"].string_param == "q0.95"
    value = answer.parameters["threshold_value"].double_param
    outputs = {output.name: output for output in answer.outputs}
    assert list(outputs) == ["score", "embedding", "is_anomaly"]
    assert outputs["is_anomaly"].datatype == "BOOL"
    decisions = list(outputs["is_anomaly"].contents.bool_contents)
    assert decisions == [s > value for s in outputs["score"].contents.fp32_contents]


def test_requested_outputs_and_the_threshold_decision(oip: triton.InferenceServerClient) -> None:
    batch = tensor(pngs(4))
    outputs = [triton.InferRequestedOutput("score"), triton.InferRequestedOutput("is_anomaly")]
    result = oip.infer(
        "digits", [image_input(batch)], outputs=outputs, parameters={"threshold": 1.5}
    )
    assert result.as_numpy("embedding") is None
    np.testing.assert_array_equal(result.as_numpy("is_anomaly"), result.as_numpy("score") > 1.5)
    parameters = result.get_response().parameters
    assert parameters["threshold_value"].double_param == 1.5


def test_async_client(live: LiveServer) -> None:
    images = pngs(2)

    async def session() -> np.ndarray:
        client = triton_aio.InferenceServerClient(grpc_url(live))
        try:
            assert await client.is_server_live() and await client.is_server_ready()
            assert await client.is_model_ready("digits", "2")
            meta = await client.get_model_metadata("digits", as_json=True)
            assert meta["versions"] == ["1", "2"]
            config = await client.get_model_config("digits", as_json=True)
            assert config["config"]["name"] == "digits"
            with pytest.raises(InferenceServerException) as caught:
                await client.get_model_metadata("nope")
            assert str(caught.value.status()) == "StatusCode.NOT_FOUND"
            result = await client.infer("digits", [image_input(tensor(images))])
            scores: np.ndarray = result.as_numpy("score")
            return scores
        finally:
            await client.close()

    scores = asyncio.run(session())
    with live.client() as client:
        np.testing.assert_allclose(scores, score_route(client, images), rtol=0, atol=1e-5)


def test_errors_are_status_codes(
    oip: triton.InferenceServerClient, stub: service_pb2_grpc.GRPCInferenceServiceStub
) -> None:
    batch = tensor(pngs(1))
    code, message = code_of(lambda: oip.infer("nope", [image_input(batch)]))
    assert code == "StatusCode.NOT_FOUND" and "nope" in message
    code, _ = code_of(lambda: oip.infer("digits", [image_input(batch)], model_version="9"))
    assert code == "StatusCode.NOT_FOUND"
    code, _ = code_of(lambda: oip.get_model_config("nope"))
    assert code == "StatusCode.NOT_FOUND"
    code, message = code_of(lambda: oip.infer("digits", [image_input(batch[:, :, :27])]))
    assert code == "StatusCode.INVALID_ARGUMENT" and "shape" in message
    wide = batch.astype(np.float64)
    code, message = code_of(lambda: oip.infer("digits", [image_input(wide, "FP64")]))
    assert code == "StatusCode.INVALID_ARGUMENT" and "FP32" in message
    outputs = [triton.InferRequestedOutput("nothing")]
    code, _ = code_of(lambda: oip.infer("digits", [image_input(batch)], outputs=outputs))
    assert code == "StatusCode.INVALID_ARGUMENT"
    wrong_field = typed_request(batch)
    wrong_field.inputs[0].contents.int_contents.append(1)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(wrong_field, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "int_contents" in str(caught.value.details())


def test_health_service_and_draining(live: LiveServer, oip: triton.InferenceServerClient) -> None:
    url = grpc_url(live)
    assert health(url) == SERVING and health(url, "inference.GRPCInferenceService") == SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health(url, "elsewhere")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(url) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == SERVING
        watch.cancel()
    state = live.app.state.service
    state.draining = True
    try:
        assert health(url) == NOT_SERVING and not oip.is_server_ready()
        assert oip.infer("digits", [image_input(tensor(pngs(1)))]).as_numpy("score").shape == (1,)
    finally:
        state.draining = False
    assert health(url) == SERVING


def test_requests_are_counted(oip: triton.InferenceServerClient, live: LiveServer) -> None:
    with live.client() as client:
        before = client.get("/metrics").text
        oip.infer("digits", [image_input(tensor(pngs(3)))])
        after = client.get("/metrics").text

    def scored(text: str) -> float:
        return metric_value(text, "deepsvdd_images_scored_total", model="digits", version="2")

    def calls(text: str) -> float:
        return metric_value(
            text, "deepsvdd_request_duration_seconds_count", route=INFER_ROUTE, status="2xx"
        )

    assert scored(after) - scored(before) == 3
    assert calls(after) - calls(before) == 1


def test_shed_load_is_resource_exhausted(model_repo: ModelRepo) -> None:
    settings = make_settings(
        model_repo.path,
        grpc_port=free_port(),
        max_body_bytes=64 * 1024,
        max_queue=4,
        max_images=4,
        max_delay_ms=1500,
    )
    batch = tensor(pngs(4))
    with running_server(settings) as server, server.client() as client:
        oip = triton.InferenceServerClient(grpc_url(server))
        held: list[triton.InferResult] = []
        first = threading.Thread(
            target=lambda: held.append(oip.infer("digits", [image_input(batch)]))
        )
        first.start()
        end = time.monotonic() + 10
        while metric_value(client.get("/metrics").text, "deepsvdd_queue_depth") < 4:
            assert time.monotonic() < end, "the first request never reached the queue"
            time.sleep(0.02)
        code, message = code_of(lambda: oip.infer("digits", [image_input(batch[:1])]))
        first.join(timeout=30)
        big = np.full((30, 1, 28, 28), 0.5, dtype=np.float32)  # 94 KB, over the 64 KiB limit
        too_big, _ = code_of(lambda: oip.infer("digits", [image_input(big)]))
        text = client.get("/metrics").text
        oip.close()
    assert code == "StatusCode.RESOURCE_EXHAUSTED" and "queue is full" in message
    assert held[0].as_numpy("score").shape == (4,)
    assert too_big == "StatusCode.RESOURCE_EXHAUSTED"
    assert metric_value(text, "deepsvdd_rejected_requests_total", reason="queue_full") == 1


def test_unavailable_until_the_models_are_warm(
    model_repo: ModelRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = service.repository.load_model

    def slow_load(*args: object, **kwargs: object) -> service.repository.LoadedModel:
        release.wait(timeout=30)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service.repository, "load_model", slow_load)
    settings = make_settings(model_repo.path, grpc_port=free_port())
    with running_server(settings, ready=False) as server:
        url = grpc_url(server)
        oip = triton.InferenceServerClient(url)
        try:
            assert oip.is_server_live() and not oip.is_server_ready()
            assert not oip.is_model_ready("digits") and health(url) == NOT_SERVING
            code, message = code_of(lambda: oip.infer("digits", [image_input(tensor(pngs(1)))]))
            assert code == "StatusCode.UNAVAILABLE" and "loading" in message
            release.set()
            wait_ready(server.url)
            assert oip.is_server_ready() and health(url) == SERVING
        finally:
            release.set()
            oip.close()


Field = tuple[int, int, int, str]


def _fields(file: descriptor_pb2.FileDescriptorProto) -> dict[str, Field]:
    """Every field of every message, by full name: number, label, type and type name."""
    found: dict[str, Field] = {}

    def visit(message: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        for field in message.field:
            found[f"{prefix}{message.name}.{field.name}"] = (
                field.number,
                field.label,
                field.type,
                field.type_name,
            )
        for nested in message.nested_type:
            visit(nested, f"{prefix}{message.name}.")

    for message in file.message_type:
        visit(message, "")
    return found


def test_the_messages_match_tritons_on_the_wire() -> None:
    ours = descriptor_pb2.FileDescriptorProto()
    POOL.FindFileByName("inference.proto").CopyToProto(ours)
    theirs: dict[str, Field] = {}
    for module in (service_pb2, model_config_pb2):
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        theirs |= _fields(file)
    for name, field in _fields(ours).items():
        assert theirs.get(name) == field, name
    (service_ours,) = ours.service
    (service_theirs,) = [s for s in service_pb2.DESCRIPTOR.services_by_name.values()]
    for method in service_ours.method:
        assert service_theirs.methods_by_name[method.name].input_type.full_name == (
            method.input_type.removeprefix(".")
        )


def test_the_committed_descriptor_is_compiled_from_the_proto(tmp_path: Path) -> None:
    out = tmp_path / "inference.binpb"
    proto_dir = DESCRIPTOR_SET.parent
    compiled = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--descriptor_set_out={out}",
            str(proto_dir / "inference.proto"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stderr
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert fresh == descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())


def test_a_taken_port_stops_the_start_naming_the_setting(model_repo: ModelRepo) -> None:
    async def start(port: int) -> None:
        state = ServiceState(make_settings(model_repo.path, grpc_port=port), Metrics())
        async with grpc_listener(state, "0.1.0"):
            raise AssertionError("gRPC started on a port that is taken")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="DEEPSVDD_GRPC_PORT"):
            asyncio.run(start(taken.getsockname()[1]))
