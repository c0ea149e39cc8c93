"""A patch model's anomaly map served from the one inference that scores it: `/score?explain=true`
and the Open Inference Protocol (tritonclient over HTTP and gRPC) give the map ONNX Runtime
gives for the same pixels, in one run; `/models` shows each model's kind; whole-image models
keep occlusion and its limits."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from PIL import Image
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from modelfile import ANOMALY_MAP_OUTPUT, INPUT_NAME, SCORE_OUTPUT
from modelfile.metadata import METADATA_KEY, InputSpec, PatchInfo
from modelfile.pixels import to_input
from service.decoding import decode_pixels
from service.explain import OVERLAY_SIDE, cell_index, grid_overlay
from service.repository import ModelLoadError, SessionConfig, load_model
from tests.support.images import image_bytes, noise_image
from tests.support.metrics import metric_value_or_zero
from tests.support.models import build_model
from tests.support.patch_models import (
    CELL,
    HEIGHT,
    MAP_SHAPE,
    PATCH_RECORD,
    WIDTH,
    build_patch_model,
)
from tests.support.servers import LiveServer, free_port, make_settings, running_server

SPEC = InputSpec(channels=1, height=HEIGHT, width=WIDTH, color="L")
INFERENCES = "deepsvdd_inference_duration_seconds_count"


@pytest.fixture(scope="module")
def live(patch_repo: Path) -> Iterator[LiveServer]:
    settings = make_settings(patch_repo, max_explain_images=2, grpc_port=free_port())
    with running_server(settings) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


@pytest.fixture(scope="module")
def session(patch_repo: Path) -> ort.InferenceSession:
    """The patch model run directly, outside the service."""
    path = patch_repo / "patches" / "1" / "model.onnx"
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def pngs(count: int, seed: int = 0) -> list[bytes]:
    return [image_bytes(noise_image(seed + i, (WIDTH, HEIGHT), "L")) for i in range(count)]


def direct(session: ort.InferenceSession, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and maps from ONNX Runtime on the service's own decoding of the images."""
    batch = to_input([decode_pixels(d, "x", SPEC, 40_000_000) for d in images])
    scores, maps = session.run([SCORE_OUTPUT, ANOMALY_MAP_OUTPUT], {INPUT_NAME: batch})
    return scores, maps


def score(client: httpx.Client, model: str, images: list[bytes], **params: str) -> httpx.Response:
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    return client.post("/score", params={"model": model, **params}, files=files)


def inferences(client: httpx.Client) -> float:
    return metric_value_or_zero(client.get("/metrics").text, INFERENCES, model="patches")


def test_models_show_each_kind_and_the_graphs_map(client: httpx.Client) -> None:
    listed = {m["name"]: m["versions"][0] for m in client.get("/models").json()["models"]}
    assert listed["patches"]["kind"] == "patch"
    assert listed["patches"]["anomaly_map"] == list(MAP_SHAPE)
    assert listed["digits"]["kind"] == "image" and listed["digits"]["anomaly_map"] is None


def test_explain_serves_the_graphs_map_from_one_inference(
    client: httpx.Client, session: ort.InferenceSession
) -> None:
    images = pngs(3)
    before = inferences(client)
    response = score(client, "patches", images, explain="true")
    assert response.status_code == 200, response.text
    assert inferences(client) == before + 1
    scores, maps = direct(session, images)
    for result, want_score, want_map in zip(response.json()["results"], scores, maps, strict=True):
        shown = result["anomaly_map"]
        assert (shown["height"], shown["width"]) == MAP_SHAPE
        np.testing.assert_allclose(shown["values"], want_map.ravel(), rtol=1e-5, atol=1e-7)
        assert result["score"] == pytest.approx(float(want_score), rel=1e-5)
        picture = Image.open(io.BytesIO(base64.b64decode(shown["png"])))
        scale = OVERLAY_SIDE // WIDTH
        assert picture.size == (WIDTH * scale, HEIGHT * scale)
    plain = score(client, "patches", images).json()["results"]
    assert [r["score"] for r in plain] == [r["score"] for r in response.json()["results"]]
    assert inferences(client) == before + 2
    assert all("anomaly_map" not in r for r in plain)


def test_the_map_is_row_major_with_the_top_left_cell_first(client: httpx.Client) -> None:
    """A dark cell planted on a uniform grey image (every other cell scores 0: the centre is
    a grey cell's feature) is the hottest value, at its row and column, and the overlay
    changes the image there and nowhere else."""
    row, col = 1, MAP_SHAPE[1] - 2
    pixels = np.full((HEIGHT, WIDTH), 128, np.uint8)
    pixels[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL] = 0
    response = score(client, "patches", [image_bytes(Image.fromarray(pixels))], explain="true")
    shown = response.json()["results"][0]["anomaly_map"]
    values = np.array(shown["values"]).reshape(MAP_SHAPE)
    assert np.unravel_index(np.argmax(values), MAP_SHAPE) == (row, col)
    overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(shown["png"]))).convert("RGB"))
    scale = overlay.shape[1] // WIDTH
    image = np.kron(pixels, np.ones((scale, scale), np.uint8))[..., None].astype(int)
    changed = np.abs(overlay.astype(int) - image).max(axis=2) > 10
    cells = changed.reshape(MAP_SHAPE[0], CELL * scale, MAP_SHAPE[1], CELL * scale).any(axis=(1, 3))
    assert np.argwhere(cells).tolist() == [[row, col]]


def test_patch_maps_are_not_bounded_as_occlusion_maps(client: httpx.Client) -> None:
    images = pngs(5, seed=10)
    patches = score(client, "patches", images, explain="true")
    assert patches.status_code == 200 and len(patches.json()["results"]) == 5
    occlusion = score(client, "digits", images, explain="true")
    assert occlusion.status_code == 413  # max_explain_images 2: 170 inferences an image there


def test_a_whole_image_model_keeps_occlusion_maps(client: httpx.Client) -> None:
    digits = [image_bytes(noise_image(3, (28, 28), "L"))]
    shown = score(client, "digits", digits, explain="true").json()["results"][0]["anomaly_map"]
    assert (shown["height"], shown["width"]) == (28, 28)


@pytest.fixture(scope="module")
def oip(live: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=live.url.removeprefix("http://"))
    yield client
    client.close()


def image_input(batch: np.ndarray, *, binary: bool) -> triton.InferInput:
    entry = triton.InferInput("image", list(batch.shape), "FP32")
    entry.set_data_from_numpy(batch, binary_data=binary)
    return entry


def test_v2_metadata_and_config_list_the_map(oip: triton.InferenceServerClient) -> None:
    outputs = {o["name"]: o for o in oip.get_model_metadata("patches")["outputs"]}
    assert outputs[ANOMALY_MAP_OUTPUT] == {
        "name": ANOMALY_MAP_OUTPUT,
        "datatype": "FP32",
        "shape": [-1, *MAP_SHAPE],
    }
    config = {o["name"]: o for o in oip.get_model_config("patches")["output"]}
    assert config[ANOMALY_MAP_OUTPUT]["dims"] == list(MAP_SHAPE)
    digits = [o["name"] for o in oip.get_model_metadata("digits")["outputs"]]
    assert ANOMALY_MAP_OUTPUT not in digits


@pytest.mark.parametrize("binary", [True, False])
def test_v2_infer_returns_the_graphs_map_in_one_inference(
    oip: triton.InferenceServerClient,
    client: httpx.Client,
    session: ort.InferenceSession,
    binary: bool,
) -> None:
    images = pngs(4, seed=20)
    batch = to_input([decode_pixels(d, "x", SPEC, 40_000_000) for d in images])
    before = inferences(client)
    asked = [triton.InferRequestedOutput(ANOMALY_MAP_OUTPUT, binary_data=binary)]
    result = oip.infer("patches", [image_input(batch, binary=binary)], outputs=asked)
    assert inferences(client) == before + 1
    assert result.as_numpy(SCORE_OUTPUT) is None
    scores, maps = direct(session, images)
    got = result.as_numpy(ANOMALY_MAP_OUTPUT)
    assert got.dtype == np.float32 and got.shape == (4, *MAP_SHAPE)
    np.testing.assert_allclose(got, maps, rtol=1e-5, atol=1e-7)
    served = score(client, "patches", images, explain="true").json()["results"]
    np.testing.assert_allclose(
        [r["anomaly_map"]["values"] for r in served], got.reshape(4, -1), rtol=1e-5, atol=1e-7
    )

    everything = oip.infer("patches", [image_input(batch, binary=True)])
    np.testing.assert_allclose(everything.as_numpy(ANOMALY_MAP_OUTPUT), maps, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(everything.as_numpy(SCORE_OUTPUT), scores, rtol=1e-5)
    assert everything.as_numpy("embedding").shape == (4, 6)
    only_score = oip.infer(
        "patches", [image_input(batch, binary=True)], outputs=[triton.InferRequestedOutput("score")]
    )
    assert only_score.as_numpy(ANOMALY_MAP_OUTPUT) is None
    np.testing.assert_allclose(only_score.as_numpy(SCORE_OUTPUT), scores, rtol=1e-5)


def test_v2_refuses_a_map_from_a_model_without_one(oip: triton.InferenceServerClient) -> None:
    batch = np.zeros((1, 1, 28, 28), np.float32)
    asked = [triton.InferRequestedOutput(ANOMALY_MAP_OUTPUT)]
    with pytest.raises(InferenceServerException, match="'anomaly_map' is not one of"):
        oip.infer("digits", [image_input(batch, binary=True)], outputs=asked)


def test_grpc_lists_and_returns_the_map_raw_and_typed(
    live: LiveServer, client: httpx.Client, session: ort.InferenceSession
) -> None:
    images = pngs(3, seed=30)
    batch = to_input([decode_pixels(d, "x", SPEC, 40_000_000) for d in images])
    _, maps = direct(session, images)
    url = f"127.0.0.1:{live.app.state.service.settings.grpc_port}"
    typed = service_pb2.ModelInferRequest(model_name="patches")
    tensor = typed.inputs.add(name="image", datatype="FP32", shape=batch.shape)
    tensor.contents.fp32_contents.extend(batch.ravel().tolist())
    typed.outputs.add(name=ANOMALY_MAP_OUTPUT)
    before = inferences(client)
    with triton_grpc.InferenceServerClient(url) as grpc_client:
        meta = grpc_client.get_model_metadata("patches", as_json=True)
        config = grpc_client.get_model_config("patches", as_json=True)["config"]
        entry = triton_grpc.InferInput("image", list(batch.shape), "FP32")
        entry.set_data_from_numpy(batch)
        asked = [triton_grpc.InferRequestedOutput(ANOMALY_MAP_OUTPUT)]
        raw = grpc_client.infer("patches", [entry], outputs=asked)
    with grpc.insecure_channel(url) as channel:
        answer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(typed, timeout=10)
    assert inferences(client) == before + 2
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs[ANOMALY_MAP_OUTPUT]["shape"] == [str(d) for d in (-1, *MAP_SHAPE)]
    dims = {o["name"]: o for o in config["output"]}[ANOMALY_MAP_OUTPUT]["dims"]
    assert dims == [str(d) for d in MAP_SHAPE]
    np.testing.assert_allclose(raw.as_numpy(ANOMALY_MAP_OUTPUT), maps, rtol=1e-5, atol=1e-7)
    assert raw.as_numpy(SCORE_OUTPUT) is None
    (output,) = answer.outputs
    assert output.name == ANOMALY_MAP_OUTPUT and list(output.shape) == [3, *MAP_SHAPE]
    typed_map = np.array(output.contents.fp32_contents).reshape(3, *MAP_SHAPE)
    np.testing.assert_allclose(typed_map, maps, rtol=1e-5, atol=1e-7)


def test_a_patch_model_without_a_grid_is_refused(tmp_path: Path) -> None:
    """kind patch needs the `anomaly_map` output, and an `anomaly_map` must be `[N, h, w]`."""
    config = SessionConfig(["CPUExecutionProvider"], 1)
    patch_meta = {"kind": "patch", "patch": PATCH_RECORD}
    no_map = build_model(tmp_path, "nomap", 1, meta_overrides=patch_meta).path
    with pytest.raises(ModelLoadError, match="no output 'anomaly_map'"):
        load_model(no_map, "nomap", 1, config)
    other_grid = build_patch_model(tmp_path, "othergrid", 1)
    graph = onnx.load(str(other_grid.path))
    meta = json.loads(graph.metadata_props[0].value)
    meta["patch"]["grid"] = [MAP_SHAPE[1], MAP_SHAPE[0]]
    onnx.helper.set_model_props(graph, {METADATA_KEY: json.dumps(meta)})
    onnx.save(graph, str(other_grid.path))
    with pytest.raises(ModelLoadError, match="is a 8x12 grid, the metadata's patch grid 12x8"):
        load_model(other_grid.path, "othergrid", 1, config)
    flat = build_model(tmp_path, "flat", 1).path
    graph = onnx.load(str(flat))
    graph.graph.node.append(onnx.helper.make_node("Identity", ["embedding"], [ANOMALY_MAP_OUTPUT]))
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info(ANOMALY_MAP_OUTPUT, onnx.TensorProto.FLOAT, ["N", 8])
    )
    onnx.save(graph, str(flat))
    with pytest.raises(ModelLoadError, match=r"'anomaly_map' has shape .* not rank 3"):
        load_model(flat, "flat", 1, config)


def test_each_cell_is_drawn_where_its_patch_is_centred() -> None:
    """A 128-px model of 32-px patches every 4 px has a 25 x 25 grid: its cells' patches are
    centred from pixel 16 to 112, so a cell covers the 4 px at its centre, the edge cells
    reaching the borders; a grid without that geometry spreads evenly."""
    geometry = PatchInfo(size=32, stride=4, grid=[25, 25], coreset=1, bank=1, dims=1, score="max")
    index = cell_index(128, 25, geometry)
    assert index[[0, 13, 14, 17, 18, 109, 110, 127]].tolist() == [0, 0, 0, 0, 1, 23, 24, 24]
    assert cell_index(128, 25, None)[[0, 5, 6, 127]].tolist() == [0, 0, 1, 24]
    cells = np.zeros((25, 25), np.float32)
    cells[0, 24] = 1.0  # top right
    image = np.full((1, 128, 128), 0.5, np.float32)
    drawn = np.asarray(Image.open(io.BytesIO(grid_overlay(image, cells, geometry))).convert("L"))
    scale = drawn.shape[0] // 128
    rows, cols = np.nonzero(drawn != 128)
    assert (rows.min(), rows.max() // scale, cols.min() // scale, cols.max()) == (
        0,
        17,
        110,
        128 * scale - 1,
    )
