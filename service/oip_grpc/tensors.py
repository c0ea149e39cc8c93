"""Infer requests and answers between the gRPC messages and the REST route's forms.

A `ModelInferRequest` becomes the body of the binary tensor extension (a JSON header, then
each input's bytes), so that `service.oip.parse_infer` validates it exactly as it does REST
requests; typed `fp32_contents` are turned into those bytes first. Outputs go back typed, or in
`raw_output_contents` when the inputs came raw, as Triton answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.oip import InferRequest, bad_request

_WIRE_TYPES = {"FP32": np.dtype("<f4"), "BOOL": np.dtype("?")}
_TYPED_FIELDS = (
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
)


@dataclass(frozen=True)
class RestBody:
    """An infer request in the binary tensor extension's form, and whether its inputs came raw."""

    body: bytes
    header_length: str
    raw: bool


def parameters_of(entries: Any) -> dict[str, Any]:
    """A protobuf map of `InferParameter`s as plain values (the JSON form's `parameters`)."""
    values: dict[str, Any] = {}
    for key, parameter in entries.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = None if choice is None else getattr(parameter, choice)
    return values


def _typed_bytes(tensor: Any) -> bytes:
    """An input's typed contents as little-endian bytes; FP32 data in `fp32_contents` only."""
    contents = tensor.contents
    used = [field for field in _TYPED_FIELDS if len(getattr(contents, field))]
    if used and used != ["fp32_contents"]:
        raise bad_request(
            f"input {tensor.name[:64]!r} carries {', '.join(used)}; FP32 data goes in "
            "fp32_contents or raw_input_contents"
        )
    return np.asarray(contents.fp32_contents, dtype=_WIRE_TYPES["FP32"]).tobytes()


def rest_body(request: Any) -> RestBody:
    """`request` (a `ModelInferRequest`) as the REST route's binary body."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise bad_request(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    inputs, data = [], []
    for index, tensor in enumerate(request.inputs):
        if raw and tensor.HasField("contents"):
            raise bad_request(
                f"input {tensor.name[:64]!r} has typed contents beside raw_input_contents"
            )
        tensor_bytes = raw[index] if raw else _typed_bytes(tensor)
        inputs.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.shape),
                "parameters": {"binary_data_size": len(tensor_bytes)},
            }
        )
        data.append(tensor_bytes)
    header: dict[str, Any] = {"inputs": inputs, "parameters": parameters_of(request.parameters)}
    if request.id:
        header["id"] = request.id
    if request.outputs:
        header["outputs"] = [
            {"name": output.name, "parameters": parameters_of(output.parameters)}
            for output in request.outputs
        ]
    encoded = orjson.dumps(header)
    return RestBody(encoded + b"".join(data), str(len(encoded)), bool(raw))


def _set_parameter(parameter: Any, value: str | float) -> None:
    if isinstance(value, str):
        parameter.string_param = value
    else:
        parameter.double_param = value


def fill_answer(
    response: Any,
    request: InferRequest,
    tensors: dict[str, np.ndarray],
    parameters: dict[str, str | float] | None,
    *,
    raw: bool,
) -> None:
    """Fills `response` (a `ModelInferResponse` naming the model) with each requested output,
    raw or typed, and the answer's `parameters`."""
    if request.id is not None:
        response.id = request.id
    for key, value in (parameters or {}).items():
        _set_parameter(response.parameters[key], value)
    for wanted in request.outputs:
        array = tensors[wanted.name]
        datatype = "BOOL" if array.dtype == np.bool_ else "FP32"
        output = response.outputs.add(name=wanted.name, datatype=datatype, shape=array.shape)
        flat = np.ascontiguousarray(array, dtype=_WIRE_TYPES[datatype]).reshape(-1)
        if raw:
            response.raw_output_contents.append(flat.tobytes())
        elif datatype == "BOOL":
            output.contents.bool_contents.extend(flat.tolist())
        else:
            output.contents.fp32_contents.extend(flat.tolist())
