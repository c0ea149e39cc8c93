"""The Open Inference Protocol v2 through Triton's own client, `tritonclient.http`, and KServe's
(`kserve.InferenceRESTClient`) side by side against a live server: health, metadata,
inference in JSON and binary, and the same scores as /score."""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from modelfile.metadata import InputSpec
from modelfile.pixels import to_input
from service.decoding import decode_pixels
from service.errors import ApiError
from service.oip import parse_infer
from tests.deploy.test_triton_repository import PB
from tests.support.images import image_bytes, noise_image
from tests.support.metrics import metric_value
from tests.support.models import ModelRepo
from tests.support.servers import LiveServer, make_settings

MAX_PIXELS = 40_000_000


@pytest.fixture(scope="module")
def oip(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client
    client.close()


def pngs(seeds: range, size: tuple[int, int], mode: str) -> list[bytes]:
    return [image_bytes(noise_image(seed, size, mode)) for seed in seeds]


def tensor(images: list[bytes], spec: InputSpec) -> np.ndarray:
    """The `image` tensor of PNGs, decoded by the service's own decoding."""
    return to_input(
        [decode_pixels(data, f"image {i}", spec, MAX_PIXELS) for i, data in enumerate(images)]
    )


def score_route(client: httpx.Client, model: str, images: list[bytes]) -> np.ndarray:
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    response = client.post("/score", params={"model": model}, files=files)
    assert response.status_code == 200, response.text
    return np.array([r["score"] for r in response.json()["results"]])


def image_input(batch: np.ndarray, *, binary: bool) -> triton.InferInput:
    entry = triton.InferInput("image", list(batch.shape), "FP32")
    entry.set_data_from_numpy(batch, binary_data=binary)
    return entry


SPECS = {
    "digits": (InputSpec(channels=1, height=28, width=28, color="L"), (28, 28), "L"),
    "colour": (InputSpec(channels=3, height=32, width=32, color="RGB"), (32, 32), "RGB"),
}


def test_health_and_server_metadata(oip: triton.InferenceServerClient) -> None:
    assert oip.is_server_live()
    assert oip.is_server_ready()
    meta = oip.get_server_metadata()
    assert meta["name"] == "deepsvdd-serve"
    assert "binary_tensor_data" in meta["extensions"]
    assert oip.is_model_ready("digits")
    assert oip.is_model_ready("digits", "1")
    assert not oip.is_model_ready("digits", "7")
    assert not oip.is_model_ready("nope")


# KServe's SDK runs in a process of its own, from the tools' virtualenv (`make install`): it
# pins pandas<3, python-dateutil<3 and psutil<6, which the project's venv has outgrown, and its
# protobuf descriptors and tritonclient.grpc's (tests/service/test_grpc.py) both define
# `inference.ServerLiveRequest`, which one process's descriptor pool refuses.
KSERVE_PYTHON = Path(__file__).resolve().parents[2] / ".venv-tools" / "bin" / "python"
KSERVE_HEALTH = """
import asyncio, json, sys
from kserve import InferenceRESTClient, RESTConfig

async def main(url):
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    answers = {}
    try:
        for name, call in [
            ("live", client.is_server_live(url)),
            ("ready", client.is_server_ready(url)),
            ("digits", client.is_model_ready(url, "digits")),
            ("nope", client.is_model_ready(url, "nope")),
        ]:
            try:
                answers[name] = await call
            except Exception as exc:
                answers[name] = type(exc).__name__
    finally:
        await client.close()
    print(json.dumps(answers))

asyncio.run(main(sys.argv[1]))
"""


def kserve_health(url: str) -> dict[str, Any]:
    """What KServe's `InferenceRESTClient` (protocol v2) says of the server's health."""
    assert KSERVE_PYTHON.exists(), f"KServe's SDK is missing ({KSERVE_PYTHON}): make install"
    done = subprocess.run(
        [str(KSERVE_PYTHON), "-c", KSERVE_HEALTH, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answers: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answers


def test_health_through_kserves_client_and_in_the_protocols_json(
    server: LiveServer, client: httpx.Client, oip: triton.InferenceServerClient
) -> None:
    assert kserve_health(server.url) == {"live": True, "ready": True, "digits": True, "nope": False}
    assert oip.is_server_live() and oip.is_server_ready()
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/digits/ready").json() == {"name": "digits", "ready": True}
    version = client.get("/v2/models/digits/versions/1/ready")
    assert version.json() == {"name": "digits", "ready": True}
    missing = client.get("/v2/models/digits/versions/7/ready")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}


def test_model_config_is_a_triton_model_config(oip: triton.InferenceServerClient) -> None:
    config = json_format.ParseDict(oip.get_model_config("colour"), PB.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == (
        "colour",
        "onnxruntime_onnx",
        256,
    )
    (image,) = config.input
    assert (image.name, PB.DataType.Name(image.data_type), list(image.dims)) == (
        "image",
        "TYPE_FP32",
        [3, 32, 32],
    )
    score, embedding = config.output
    assert score.name == "score" and list(score.dims) == [1] and score.HasField("reshape")
    assert embedding.name == "embedding" and list(embedding.dims) == [8]
    assert oip.get_model_config("digits", "1")["name"] == "digits"
    assert "model_configuration" in oip.get_server_metadata()["extensions"]


def test_model_metadata_is_tritons_view_of_the_repository(
    oip: triton.InferenceServerClient,
) -> None:
    meta = oip.get_model_metadata("colour")
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"] == [
        {"name": "score", "datatype": "FP32", "shape": [-1]},
        {"name": "embedding", "datatype": "FP32", "shape": [-1, 8]},
    ]
    assert oip.get_model_metadata("digits")["versions"] == ["1", "2"]
    assert oip.get_model_metadata("digits", "1")["versions"] == ["1"]
    with pytest.raises(InferenceServerException, match="not loaded"):
        oip.get_model_metadata("nope")


@pytest.mark.parametrize("model", ["digits", "colour"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_gives_the_scores_of_the_score_route(
    oip: triton.InferenceServerClient,
    client: httpx.Client,
    model_repo: ModelRepo,
    model: str,
    binary: bool,
) -> None:
    spec, size, mode = SPECS[model]
    images = pngs(range(5), size, mode)
    batch = tensor(images, spec)
    outputs = [
        triton.InferRequestedOutput("score", binary_data=binary),
        triton.InferRequestedOutput("embedding", binary_data=binary),
    ]
    result = oip.infer(model, [image_input(batch, binary=binary)], outputs=outputs)
    scores = result.as_numpy("score")
    assert scores.dtype == np.float32 and scores.shape == (5,)
    np.testing.assert_allclose(scores, score_route(client, model, images), rtol=1e-5)
    tiny = model_repo.model(model, 2 if model == "digits" else 1)
    flat = batch.reshape(5, -1).astype(np.float64)
    np.testing.assert_allclose(
        result.as_numpy("embedding"), flat @ tiny.weights, rtol=1e-4, atol=1e-5
    )
    answer = result.get_response()
    assert answer["model_name"] == model
    assert answer["model_version"] == str(tiny.version)


def test_default_outputs_are_binary_and_a_pinned_version_is_used(
    oip: triton.InferenceServerClient, client: httpx.Client, model_repo: ModelRepo
) -> None:
    images = pngs(range(10, 13), (28, 28), "L")
    result = oip.infer(
        "digits", [image_input(tensor(images, SPECS["digits"][0]), binary=True)], model_version="1"
    )
    expected = model_repo.model("digits", 1).reference(
        np.stack([decode_pixels(d, "x", SPECS["digits"][0], MAX_PIXELS) for d in images])
    )
    np.testing.assert_allclose(result.as_numpy("score"), expected, rtol=1e-5)
    assert result.as_numpy("embedding").shape == (3, 8)
    assert result.get_response()["model_version"] == "1"


def test_outputs_selection_and_threshold_parameter(
    oip: triton.InferenceServerClient, model_repo: ModelRepo
) -> None:
    batch = tensor(pngs(range(20, 28), (28, 28), "L"), SPECS["digits"][0])
    only_score = oip.infer(
        "digits", [image_input(batch, binary=True)], outputs=[triton.InferRequestedOutput("score")]
    )
    assert only_score.as_numpy("embedding") is None
    scores = only_score.as_numpy("score")

    threshold = float(np.median(scores))
    decided = oip.infer(
        "digits",
        [image_input(batch, binary=False)],
        outputs=[
            triton.InferRequestedOutput("score", binary_data=False),
            triton.InferRequestedOutput("is_anomaly", binary_data=True),
        ],
        parameters={"threshold": threshold},
    )
    np.testing.assert_array_equal(decided.as_numpy("is_anomaly"), scores > np.float32(threshold))
    assert decided.get_response()["parameters"] == {
        "threshold": "custom",
        "threshold_value": threshold,
    }
    named = oip.infer("digits", [image_input(batch, binary=True)], parameters={"threshold": "max"})
    top = model_repo.model("digits", 2).thresholds["max"]
    np.testing.assert_array_equal(named.as_numpy("is_anomaly"), scores > np.float32(top))
    assert named.get_response()["parameters"] == {"threshold": "max", "threshold_value": top}


def post(
    client: httpx.Client, path: str, body: dict[str, Any] | bytes, **headers: str
) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        path, content=content, headers={"content-type": "application/json", **headers}
    )


def test_nested_json_data_id_and_gzip(client: httpx.Client) -> None:
    batch = tensor(pngs(range(30, 32), (28, 28), "L"), SPECS["digits"][0])
    flat_request: dict[str, Any] = {
        "id": "req-7",
        "inputs": [
            {
                "name": "image",
                "shape": [2, 1, 28, 28],
                "datatype": "FP32",
                "data": batch.reshape(-1).tolist(),
            }
        ],
    }
    nested_request = {
        **flat_request,
        "inputs": [{**flat_request["inputs"][0], "data": batch.tolist()}],
    }
    flat = post(client, "/v2/models/digits/infer", flat_request)
    nested = post(client, "/v2/models/digits/versions/2/infer", nested_request)
    assert flat.status_code == nested.status_code == 200, nested.text
    assert flat.headers["content-type"] == "application/json"
    assert flat.json()["id"] == "req-7"
    assert flat.json()["outputs"] == nested.json()["outputs"]
    (score, embedding) = flat.json()["outputs"]
    assert (score["name"], score["datatype"], score["shape"]) == ("score", "FP32", [2])
    assert (embedding["name"], embedding["shape"]) == ("embedding", [2, 8])
    zipped = post(
        client,
        "/v2/models/digits/infer",
        gzip.compress(orjson.dumps(flat_request)),
        **{"content-encoding": "gzip"},
    )
    assert zipped.status_code == 200 and zipped.json()["outputs"] == flat.json()["outputs"]


def test_infer_counts_in_the_service_metrics(client: httpx.Client) -> None:
    def scored() -> float:
        return metric_value(
            client.get("/metrics").text, "deepsvdd_images_scored_total", model="colour", version="1"
        )

    before = scored()
    batch = tensor(pngs(range(3), (32, 32), "RGB"), SPECS["colour"][0])
    request = {
        "inputs": [
            {
                "name": "image",
                "shape": [3, 3, 32, 32],
                "datatype": "FP32",
                "data": batch.reshape(-1).tolist(),
            }
        ]
    }
    assert post(client, "/v2/models/colour/infer", request).status_code == 200
    assert scored() == before + 3
    text = client.get("/metrics").text
    assert (
        metric_value(
            text,
            "deepsvdd_request_duration_seconds_count",
            route="/v2/models/{name}/infer",
            method="POST",
            status="2xx",
        )
        >= 1
    )


def _image(shape: list[int], data: Any = None, **extra: Any) -> dict[str, Any]:
    count = int(np.prod(shape)) if all(isinstance(d, int) and d > 0 for d in shape) else 0
    return {
        "inputs": [
            {
                "name": "image",
                "shape": shape,
                "datatype": "FP32",
                "data": [0.5] * count if data is None else data,
                **extra,
            }
        ]
    }


BAD_REQUESTS: dict[str, tuple[dict[str, Any] | bytes, dict[str, str], int, str]] = {
    "not json": (b"{nope", {}, 400, "not JSON"),
    "no inputs": ({"inputs": []}, {}, 400, "exactly one"),
    "unknown input": (
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}]},
        {},
        400,
        "unknown",
    ),
    "wrong datatype": (
        {"inputs": [{**_image([1, 1, 28, 28])["inputs"][0], "datatype": "INT8"}]},
        {},
        400,
        "FP32",
    ),
    "wrong shape": (_image([1, 3, 28, 28]), {}, 400, "[-1, 1, 28, 28]"),
    "shape shown as sent": (_image([2, 3, 28, 28]), {}, 400, "has shape [2, 3, 28, 28]; the"),
    "batch of -1": (_image([-1, 1, 28, 28], []), {}, 400, "a batch of -1 images"),
    "past float32": (_image([1, 1, 28, 28], [1e39] * 784), {}, 400, "[0, 1]"),
    "empty batch": (_image([0, 1, 28, 28], []), {}, 400, "at least one"),
    "too few numbers": (_image([2, 1, 28, 28], [0.5] * 10), {}, 400, "1568 numbers"),
    "strings": (_image([1, 1, 28, 28], ["a"] * 784), {}, 400, "numbers"),
    "ragged": (_image([1, 1, 28, 28], [[0.5] * 3, [0.5]]), {}, 400, "numbers"),
    "wrong nesting": (_image([1, 1, 28, 28], [[0.5] * 28] * 28), {}, 400, "nested"),
    "out of range": (_image([1, 1, 28, 28], [255.0] * 784), {}, 400, "[0, 1]"),
    "too many images": (_image([300, 1, 28, 28], [0.5]), {}, 413, "more than"),
    "unknown output": (
        {**_image([1, 1, 28, 28]), "outputs": [{"name": "logits"}]},
        {},
        400,
        "logits",
    ),
    "classification": (
        {
            **_image([1, 1, 28, 28]),
            "outputs": [{"name": "score", "parameters": {"classification": 2}}],
        },
        {},
        400,
        "classification",
    ),
    "bad threshold": (
        {**_image([1, 1, 28, 28]), "parameters": {"threshold": "q0.42"}},
        {},
        422,
        "q0.42",
    ),
    "header past body": (
        _image([1, 1, 28, 28]),
        {"inference-header-content-length": "999999"},
        400,
        "length",
    ),
    "binary size off": (
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, 1, 28, 28],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        },
        {},
        400,
        "binary_data_size",
    ),
    "unknown encoding": (_image([1, 1, 28, 28]), {"content-encoding": "br"}, 415, "br"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_client_mistakes_are_4xx_in_the_protocols_form(client: httpx.Client, case: str) -> None:
    body, headers, status, needle = BAD_REQUESTS[case]
    response = post(client, "/v2/models/digits/infer", body, **headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error"} and isinstance(error["error"], str)
    assert needle in error["error"]


def test_binary_bytes_left_over_and_unknown_routes(client: httpx.Client) -> None:
    image = {"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32"}
    header = orjson.dumps({"inputs": [{**image, "parameters": {"binary_data_size": 784 * 4}}]})
    pixels = np.full(784, 0.5, dtype="<f4").tobytes()
    ok = post(
        client,
        "/v2/models/digits/infer",
        header + pixels,
        **{"inference-header-content-length": str(len(header))},
    )
    assert ok.status_code == 200, ok.text
    extra = post(
        client,
        "/v2/models/digits/infer",
        header + pixels + b"xx",
        **{"inference-header-content-length": str(len(header))},
    )
    assert extra.status_code == 400 and "follow the JSON header" in extra.json()["error"]
    assert client.get("/v2/models/nope").status_code == 404
    # The same 404 as /score's, naming what is loaded instead.
    loaded = ", ".join(m["name"] for m in client.get("/models").json()["models"])
    assert client.get("/v2/models/nope").json() == {
        "error": f"model 'nope' is not loaded (loaded: {loaded})"
    }
    assert client.get("/v2/models/digits/versions/x").status_code == 404
    assert client.get("/v2/nothing/here").json()["error"].startswith("no route")
    wrong_method = client.get("/v2/models/digits/infer")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_wrong_methods_get_405_with_allow(client: httpx.Client) -> None:
    infer = client.get("/v2/models/digits/infer")
    assert infer.status_code == 405 and infer.headers["allow"] == "POST"
    ready = client.post("/v2/health/ready")
    assert ready.status_code == 405 and ready.headers["allow"] == "GET"
    assert "error" in ready.json()


def test_an_empty_outputs_list_returns_every_output(client: httpx.Client) -> None:
    response = post(client, "/v2/models/digits/infer", {**_image([2, 1, 28, 28]), "outputs": []})
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["score", "embedding"]


def test_an_input_past_float32_prints_no_warning(
    client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    body = _image([1, 1, 28, 28], [1e39] * 784)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ApiError, match=r"within \[0, 1\]"):
            parse_infer(orjson.dumps(body), None, SPECS["digits"][0], max_images=4)
    assert post(client, "/v2/models/digits/infer", body).status_code == 400
    assert "overflow" not in capfd.readouterr().err


def test_readiness_fails_while_draining_but_scoring_goes_on(
    server: LiveServer, client: httpx.Client
) -> None:
    state = server.app.state.service
    state.draining = True
    try:
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/ready").json()["error"]["code"] == "draining"
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/health/ready").json()["ready"] is False
        assert kserve_health(server.url)["ready"] == "HTTPStatusError"
        assert client.get("/v2/health/live").status_code == 200
        assert score_route(client, "digits", pngs(range(1), (28, 28), "L")).shape == (1,)
    finally:
        state.draining = False
    assert client.get("/v2/health/ready").status_code == 200


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
TENSORS = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["image", "x"]) | JSON,
        "shape": st.lists(st.integers(-2, 30), max_size=5) | st.just([2, 1, 28, 28]) | JSON,
        "datatype": st.sampled_from(["FP32", "BOOL"]) | JSON,
        "data": st.lists(st.floats(0, 1, width=32), max_size=8) | JSON,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-4, 7000) | JSON}
        ),
    },
)
REQUESTS = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON,
        "parameters": st.fixed_dictionaries(
            {}, optional={"threshold": JSON, "binary_data_output": JSON}
        )
        | JSON,
        "inputs": st.lists(TENSORS, max_size=2) | JSON,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["score", "embedding", "is_anomaly", "y"]) | JSON}
            ),
            max_size=3,
        )
        | JSON,
    },
)


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(request=REQUESTS, tail=st.binary(max_size=6400), header=st.none() | st.text(max_size=6))
def test_any_infer_body_parses_or_gets_a_client_error(
    request: Any, tail: bytes, header: str | None
) -> None:
    body = orjson.dumps(request)
    length = str(len(body)) if header == "" else header
    try:
        parsed = parse_infer(body + tail, length, SPECS["digits"][0], max_images=16)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message
        return
    assert parsed.images.dtype == np.float32 and parsed.images.shape[1:] == (1, 28, 28)
    assert parsed.outputs and all(
        o.name in ("score", "embedding", "is_anomaly") for o in parsed.outputs
    )


def _request(batch: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "image",
                "shape": list(batch.shape),
                "datatype": "FP32",
                "data": batch.reshape(-1).tolist(),
            }
        ]
    }


def test_the_body_limit_and_the_queue_apply_as_for_score(
    start_server: Callable[..., LiveServer], model_repo: ModelRepo
) -> None:
    live = start_server(
        make_settings(
            model_repo.path, max_body_bytes=64 * 1024, max_queue=4, max_images=4, max_delay_ms=1500
        )
    )
    batch = tensor(pngs(range(4), (28, 28), "L"), SPECS["digits"][0])
    with live.client() as client:
        big = post(client, "/v2/models/digits/infer", b"[" + b"0.5," * 40_000 + b"0.5]")
        assert big.status_code == 413 and "over the limit" in big.json()["error"]
        held: list[httpx.Response] = []

        def hold() -> None:
            with httpx.Client(base_url=live.url, timeout=30) as other:
                held.append(post(other, "/v2/models/digits/infer", _request(batch)))

        first = threading.Thread(target=hold)
        first.start()
        end = time.monotonic() + 10
        while metric_value(client.get("/metrics").text, "deepsvdd_queue_depth") < 4:
            assert time.monotonic() < end, "the first request never reached the queue"
            time.sleep(0.02)
        shed = post(client, "/v2/models/digits/infer", _request(batch[:1]))
        first.join(timeout=30)
        text = client.get("/metrics").text
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert "queue is full" in shed.json()["error"]
    assert held[0].status_code == 200
    assert metric_value(text, "deepsvdd_rejected_requests_total", reason="queue_full") == 1
    assert metric_value(text, "deepsvdd_rejected_requests_total", reason="body_too_large") == 1
