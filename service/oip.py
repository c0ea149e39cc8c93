"""The Open Inference Protocol v2 (KServe, Triton) on the wire: infer requests in, answers out.

Bodies are JSON, or the binary tensor extension that `tritonclient.http` sends by default: a
JSON header of `Inference-Header-Content-Length` bytes, then the tensors' raw little-endian bytes.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelfile import ANOMALY_MAP_OUTPUT, EMBEDDING_OUTPUT, INPUT_NAME, OUTPUT_NAMES, SCORE_OUTPUT
from modelfile.metadata import InputSpec
from service.errors import ApiError
from service.repository import LoadedModel

HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ("binary_tensor_data", "parameters", "model_configuration")
# Beside the graph's outputs: the threshold decision, BOOL [N], on request (see `parse_infer`).
IS_ANOMALY_OUTPUT = "is_anomaly"
_WIRE_TYPES = {"FP32": np.dtype("<f4"), "BOOL": np.dtype("?")}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: the images as float32 `(n, C, H, W)` and what to answer."""

    id: str | None
    images: np.ndarray
    outputs: tuple[RequestedOutput, ...]
    threshold: str | None

    def wants(self, name: str) -> bool:
        return any(output.name == name for output in self.outputs)


def input_shape(spec: InputSpec) -> list[int]:
    """The `image` tensor's shape in the protocol: -1 for the batch axis."""
    return [-1, spec.channels, spec.height, spec.width]


def _output_dims(model: LoadedModel) -> dict[str, list[int]]:
    """Each graph output's shape past the batch axis (`score`: one value an image)."""
    dims = {SCORE_OUTPUT: [], EMBEDDING_OUTPUT: [model.metadata.rep_dim]}
    if model.map_shape is not None:
        dims[ANOMALY_MAP_OUTPUT] = list(model.map_shape)
    return dims


def model_metadata(model: LoadedModel, versions: list[int]) -> dict[str, Any]:
    """`GET /v2/models/{name}`: what Triton answers for the same model directory."""
    return {
        "name": model.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": [
            {"name": INPUT_NAME, "datatype": "FP32", "shape": input_shape(model.metadata.input)}
        ],
        "outputs": [
            {"name": name, "datatype": "FP32", "shape": [-1, *dims]}
            for name, dims in _output_dims(model).items()
        ],
    }


def model_config(model: LoadedModel, max_batch_size: int) -> dict[str, Any]:
    """`GET /v2/models/{name}/config`: the model's Triton ModelConfig in its JSON form, with
    the largest batch one request may carry here."""
    spec = model.metadata.input
    return {
        "name": model.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": max_batch_size,
        "input": [
            {
                "name": INPUT_NAME,
                "data_type": "TYPE_FP32",
                "dims": [spec.channels, spec.height, spec.width],
            }
        ],
        "output": [
            {"name": SCORE_OUTPUT, "data_type": "TYPE_FP32", "dims": [1], "reshape": {"shape": []}},
            *(
                {"name": name, "data_type": "TYPE_FP32", "dims": dims}
                for name, dims in _output_dims(model).items()
                if name != SCORE_OUTPUT
            ),
        ],
        "dynamic_batching": {},
    }


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body under `Content-Encoding` gzip or deflate (as tritonclient may send it), at
    most `limit` bytes once inflated."""
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return body
    kind = encoding.strip().lower()
    if kind not in ("gzip", "deflate"):
        raise ApiError(
            415, "unsupported_media_type", f"Content-Encoding {kind[:32]!r} is not supported"
        )
    inflater = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise bad_request(f"the {kind} request body cannot be inflated: {exc}") from None
    if len(data) > limit:
        raise ApiError(413, "body_too_large", f"the inflated request body is over {limit} bytes")
    return data


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary part that follows it."""
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > len(body):
        raise bad_request(
            f"{HEADER_LENGTH} {header_length[:32]!r} is not a length within the "
            f"{len(body)}-byte body"
        )
    size = int(text)
    return body[:size], memoryview(body)[size:]


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{where} must be a JSON object")
    return value


def _batch_of(tensor: dict[str, Any], spec: InputSpec, max_images: int) -> list[int]:
    expected = input_shape(spec)
    if tensor.get("datatype") != "FP32":
        raise bad_request(
            f"input {INPUT_NAME!r} has datatype {str(tensor.get('datatype'))[:16]!r}, not FP32"
        )
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 4
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[1:] != expected[1:]
    ):
        raise bad_request(
            f"input {INPUT_NAME!r} has shape {str(shape)[:64]}; the model takes {expected}, "
            "where -1 is the number of images"
        )
    if shape[0] < 1:
        raise bad_request(
            f"input {INPUT_NAME!r} has shape {shape}, a batch of {shape[0]} images; a request "
            f"holds at least one (the model's {expected} leaves the count open)"
        )
    if shape[0] > max_images:
        raise ApiError(413, "too_many_images", f"more than {max_images} images in one request")
    return shape


def _json_tensor(data: Any, shape: list[int]) -> np.ndarray:
    """`data`, flat or nested row-major numbers, as float32 of `shape`."""
    try:
        array = np.asarray(data)
    except ValueError:
        array = np.asarray([], dtype=object)  # ragged nesting
    count = math.prod(shape)
    if array.dtype.kind not in "iuf" or array.size != count:
        raise bad_request(
            f"data of input {INPUT_NAME!r} must be {count} numbers for shape {shape}, "
            "flat or nested row-major"
        )
    if array.ndim != 1 and list(array.shape) != shape:
        raise bad_request(
            f"data of input {INPUT_NAME!r} is nested as {list(array.shape)}, not {shape}"
        )
    with np.errstate(over="ignore"):  # past float32's range is infinite, refused as out of [0, 1]
        return array.astype(np.float32).reshape(shape)


def _image_tensor(
    tensor: dict[str, Any], binary: memoryview, spec: InputSpec, max_images: int
) -> tuple[np.ndarray, int]:
    """The input's float32 array and how many binary bytes it took."""
    shape = _batch_of(tensor, spec, max_images)
    parameters = _object(tensor.get("parameters"), f"parameters of input {INPUT_NAME!r}")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in tensor:
            raise bad_request(f"input {INPUT_NAME!r} has neither data nor binary_data_size")
        return _json_tensor(tensor["data"], shape), 0
    expected = math.prod(shape) * 4
    if "data" in tensor:
        raise bad_request(f"input {INPUT_NAME!r} has both data and binary_data_size")
    if not isinstance(size, int) or size != expected or size > len(binary):
        raise bad_request(
            f"binary_data_size of input {INPUT_NAME!r} is {str(size)[:32]}; FP32 {shape} is "
            f"{expected} bytes and {len(binary)} follow the header"
        )
    array = np.frombuffer(binary[:size], dtype=_WIRE_TYPES["FP32"]).reshape(shape)
    return array.astype(np.float32), size


def _outputs(
    request: dict[str, Any], parameters: dict[str, Any], graph_outputs: Sequence[str]
) -> tuple[RequestedOutput, ...]:
    asked = request.get("outputs")
    if asked is None or asked == []:  # no choice made: every output
        binary = parameters.get("binary_data_output") is True
        names = list(graph_outputs)
        if "threshold" in parameters:
            names.append(IS_ANOMALY_OUTPUT)
        return tuple(RequestedOutput(name, binary) for name in names)
    if not isinstance(asked, list):
        raise bad_request("outputs must be a list of {name, parameters}")
    chosen: dict[str, RequestedOutput] = {}
    known = [*graph_outputs, IS_ANOMALY_OUTPUT]
    for entry in asked:
        entry = _object(entry, "each of outputs")
        name = entry.get("name")
        if name not in known:
            raise bad_request(f"output {str(name)[:64]!r} is not one of {known}")
        if name in chosen:
            raise bad_request(f"output {name!r} is requested twice")
        options = _object(entry.get("parameters"), f"parameters of output {name!r}")
        if options.get("classification"):
            raise bad_request("the classification extension is not supported")
        chosen[name] = RequestedOutput(name, options.get("binary_data") is True)
    return tuple(chosen.values())


def parse_infer(
    body: bytes,
    header_length: str | None,
    spec: InputSpec,
    max_images: int,
    graph_outputs: Sequence[str] = OUTPUT_NAMES,
) -> InferRequest:
    """Validates an infer request for a model whose input is `spec` and whose graph has
    `graph_outputs`; `ApiError` says what is wrong (400, or 413 past `max_images`).

    Request `parameters` may hold `threshold`: a threshold name of the model or a number, as
    `/score` takes it. The answer's `is_anomaly` output (BOOL [N], score > threshold) is
    returned when asked for in `outputs`, or when `threshold` is given and `outputs` is not.
    """
    header, binary = _split(body, header_length)
    try:
        request = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request header is not JSON: {exc}") from None
    request = _object(request, "the request")
    parameters = _object(request.get("parameters"), "parameters")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request("id must be a string")
    threshold = parameters.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, str | int | float)
    ):
        raise bad_request("parameter threshold must be a threshold name or a number")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise bad_request(f"inputs must list exactly one tensor, {INPUT_NAME!r}")
    tensor = _object(inputs[0], "each of inputs")
    if tensor.get("name") != INPUT_NAME:
        raise bad_request(
            f"input {str(tensor.get('name'))[:64]!r} is unknown; the model takes {INPUT_NAME!r}"
        )
    images, used = _image_tensor(tensor, binary, spec, max_images)
    if used != len(binary):
        raise bad_request(
            f"{len(binary)} bytes follow the JSON header, but the inputs declare {used}"
        )
    if not (np.all(images >= 0.0) and np.all(images <= 1.0)):
        raise bad_request(
            f"input {INPUT_NAME!r} must hold pixel values / 255, finite and within [0, 1]"
        )
    return InferRequest(
        id=request_id,
        images=images,
        outputs=_outputs(request, parameters, graph_outputs),
        threshold=None if threshold is None else str(threshold),
    )


@dataclass(frozen=True)
class Answer:
    body: bytes
    media_type: str
    headers: dict[str, str]


def infer_answer(
    model: LoadedModel,
    request: InferRequest,
    tensors: dict[str, np.ndarray],
    parameters: dict[str, Any] | None = None,
) -> Answer:
    """The infer response: each requested output in JSON `data` or as binary after the header."""
    outputs: list[dict[str, Any]] = []
    raw: list[bytes] = []
    for wanted in request.outputs:
        array = tensors[wanted.name]
        datatype = "BOOL" if array.dtype == np.bool_ else "FP32"
        entry: dict[str, Any] = {
            "name": wanted.name,
            "datatype": datatype,
            "shape": list(array.shape),
        }
        if wanted.binary:
            data = np.ascontiguousarray(array, dtype=_WIRE_TYPES[datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
    if request.id is not None:
        response["id"] = request.id
    if parameters:
        response["parameters"] = parameters
    response["outputs"] = outputs
    header = orjson.dumps(response)
    if not raw:
        return Answer(header, "application/json", {})
    return Answer(
        header + b"".join(raw), "application/octet-stream", {HEADER_LENGTH: str(len(header))}
    )
