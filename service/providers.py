"""Which ONNX Runtime execution providers work here, found out once per process, quietly.

`onnxruntime-gpu` lists CUDA as available wherever it is installed; asking a session for it
on a machine without the CUDA libraries makes ONNX Runtime log the failed load at severity
error, at every session. The probe asks once, with ONNX Runtime's log raised above errors,
and the sessions then ask only for the providers that work.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# ONNX Runtime's own severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
ORT_ERROR, ORT_FATAL = 3, 4
# The provider libraries ONNX Runtime would open for a provider; missing CUDA or cuDNN
# libraries show up as the dynamic loader's error on opening them.
_PROVIDER_LIBRARIES = {
    CUDA: "libonnxruntime_providers_cuda.so",
    "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so",
}
_SHARED_LIBRARY = "libonnxruntime_providers_shared.so"


@dataclass(frozen=True)
class ProviderProbe:
    """The providers to ask sessions for, in order, and why each preferred one was left out."""

    providers: list[str]
    skipped: dict[str, str]

    def describe(self) -> str:
        line = f"ONNX Runtime {ort.__version__}: {self.providers[0]} active"
        if self.skipped:
            reasons = "; ".join(f"{p} unavailable: {why}" for p, why in self.skipped.items())
            line += f" ({reasons})"
        return line


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: a varint, or length-delimited bytes."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _identity_model() -> bytes:
    """A serialised ONNX model `y = Identity(x)`, x float32 [1]: enough to start a provider."""

    def value_info(name: str) -> bytes:
        shape = _field(1, _field(1, 1))  # TensorShapeProto.dim { dim_value: 1 }
        tensor = _field(1, 1) + _field(2, shape)  # elem_type FLOAT, shape
        return _field(1, name.encode()) + _field(2, _field(1, tensor))

    node = _field(1, b"x") + _field(2, b"y") + _field(4, b"Identity")
    graph = _field(1, node) + _field(2, b"probe") + _field(11, value_info("x"))
    graph += _field(12, value_info("y"))
    opset = _field(1, b"") + _field(2, 13)
    return _field(1, 8) + _field(7, graph) + _field(8, opset)  # ir_version 8, graph, opset


def _missing_library(provider: str) -> str | None:
    """The dynamic loader's complaint when the provider's library or one it needs is missing."""
    name = _PROVIDER_LIBRARIES.get(provider)
    if name is None:
        return None
    capi = Path(ort.__file__).parent / "capi"
    try:
        # ONNX Runtime opens the shared bridge globally before any provider library.
        ctypes.CDLL(str(capi / _SHARED_LIBRARY), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(capi / name))
    except OSError as exc:
        text = str(exc)
        # Only a missing file is conclusive; anything else the session below decides.
        if "cannot open" not in text:
            return None
        return f"{text.split(':')[0]} not found (it needs the CUDA 13 and cuDNN 9 libraries)"
    return None


def _session_starts(provider: str) -> bool:
    options = ort.SessionOptions()
    options.log_severity_level = ORT_FATAL
    try:
        session = ort.InferenceSession(_identity_model(), options, providers=[provider, CPU])
    except Exception:  # ONNX Runtime raises its own types; any failure means "not here"
        return False
    return provider in session.get_providers()


def _probe(preference: tuple[str, ...]) -> ProviderProbe:
    available = set(ort.get_available_providers())
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    ort.set_default_logger_severity(ORT_FATAL)
    try:
        for provider in preference:
            if provider == CPU:
                continue
            if provider not in available:
                skipped[provider] = "not in this ONNX Runtime build"
            elif (missing := _missing_library(provider)) is not None:
                skipped[provider] = missing
            elif not _session_starts(provider):
                skipped[provider] = "a session could not start it (no device or driver?)"
            else:
                chosen.append(provider)
    finally:
        ort.set_default_logger_severity(ORT_ERROR)
    return ProviderProbe([*chosen, CPU], skipped)


@functools.cache
def probe_providers(preference: tuple[str, ...]) -> ProviderProbe:
    """The working providers of `preference` (CPU last, always), probed and logged once."""
    probe = _probe(preference)
    log.info("%s", probe.describe())
    return probe
