"""The protocol's message classes, built from `inference.binpb` (compiled from
`inference.proto` by `make proto`) in a descriptor pool of their own.

Not protoc's generated modules: those register `inference.*` in protobuf's default pool, as
`tritonclient.grpc` and KServe's package do with their own files, and a process importing two
of them fails ("duplicate symbol"). A private pool lets this service live beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"
DESCRIPTOR_SET = Path(__file__).with_name("inference.binpb")


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    for file in files.file:
        pool.Add(file)
    return pool


POOL = _pool()


def message(name: str) -> Any:
    """The class of message `inference.<name>` (Any: built at run time, so no static types)."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"inference.{name}"))


def method_types(method: str) -> tuple[Any, Any]:
    """The request and response classes of one RPC of the service."""
    descriptor = POOL.FindServiceByName(SERVICE).FindMethodByName(method)
    return (
        message_factory.GetMessageClass(descriptor.input_type),
        message_factory.GetMessageClass(descriptor.output_type),
    )


def method_names() -> list[str]:
    return [method.name for method in POOL.FindServiceByName(SERVICE).methods]


ModelInferResponse = message("ModelInferResponse")
