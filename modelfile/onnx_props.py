"""Replaces one `metadata_props` entry of a serialized ONNX model, without the `onnx` package.

`ModelProto.metadata_props` is field 14, a repeated `StringStringEntryProto` (key: field 1,
value: field 2). The serving install has no `onnx`; this walks the top-level fields of the
protobuf, drops the entries with the key and appends the new one. Every other byte (the
graph, its weights, the other entries) is copied as it was.
"""

from __future__ import annotations

METADATA_PROPS = 14
_LENGTH_DELIMITED = 2


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("not an ONNX model: truncated or overlong varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data: bytes) -> list[tuple[int, int, int, int]]:
    """`(field number, wire type, start, end)` of each top-level field; payload of type 2
    starts after its length."""
    fields, pos = [], 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"not an ONNX model: wire type {wire} at byte {start}")
        if pos > len(data) or number == 0:
            raise ValueError(f"not an ONNX model: field at byte {start} runs past the end")
        fields.append((number, wire, start, pos))
    return fields


def _payload(data: bytes, start: int) -> bytes:
    _, pos = _varint(data, start)
    length, pos = _varint(data, pos)
    return data[pos : pos + length]


def _string_field(message: bytes, number: int) -> str | None:
    for n, wire, start, _ in _fields(message):
        if n == number and wire == _LENGTH_DELIMITED:
            return _payload(message, start).decode("utf-8")
    return None


def _length_delimited(number: int, payload: bytes) -> bytes:
    key = _encode_varint(number << 3 | _LENGTH_DELIMITED)
    return key + _encode_varint(len(payload)) + payload


def read_props(model: bytes) -> dict[str, str]:
    """Every `metadata_props` entry of a serialized model."""
    props = {}
    for number, wire, start, _ in _fields(model):
        if number == METADATA_PROPS and wire == _LENGTH_DELIMITED:
            entry = _payload(model, start)
            key = _string_field(entry, 1)
            if key is not None:
                props[key] = _string_field(entry, 2) or ""
    return props


def set_prop(model: bytes, key: str, value: str) -> bytes:
    """The serialized model with `metadata_props[key] = value` and nothing else changed."""
    kept = [
        model[start:end]
        for number, wire, start, end in _fields(model)
        if not (
            number == METADATA_PROPS
            and wire == _LENGTH_DELIMITED
            and _string_field(_payload(model, start), 1) == key
        )
    ]
    entry = _length_delimited(1, key.encode()) + _length_delimited(2, value.encode())
    return b"".join(kept) + _length_delimited(METADATA_PROPS, entry)
