"""The `grpc.aio` server: started in the app's event loop beside uvicorn, on
`DEEPSVDD_GRPC_PORT`, and stopped gracefully before the models are.

With several uvicorn workers, each worker runs one of these on the same port: the socket is
bound with SO_REUSEPORT, and the kernel spreads incoming connections over the workers (a gRPC
channel is one long-lived connection, so one client channel stays with one worker).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2_grpc

from service.oip_grpc.health import HealthServicer
from service.oip_grpc.servicer import InferenceServicer, generic_handler
from service.state import ServiceState

log = logging.getLogger(__name__)

# RPCs in flight get this long to finish once the server stops (the HTTP side's grace too).
GRACE_S = 30.0


def address(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_server(state: ServiceState, version: str) -> grpc.aio.Server:
    """The inference and health services over `state`; messages up to the body limit.

    SO_REUSEPORT only with several workers, whose listeners share the port; one process
    alone fails to start when the port is taken instead of sharing it with a stranger.
    """
    settings = state.settings
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.so_reuseport", int(settings.workers > 1)),
        ]
    )
    inference = InferenceServicer(state, version)
    server.add_generic_rpc_handlers((generic_handler(inference),))
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(lambda: inference.serving), server)
    where = address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(where)
    except RuntimeError as exc:
        raise RuntimeError(
            f"cannot listen for gRPC on {where} (DEEPSVDD_GRPC_PORT; 0 turns gRPC off): {exc}"
        ) from exc
    return server


@contextlib.asynccontextmanager
async def grpc_listener(state: ServiceState, version: str) -> AsyncIterator[None]:
    """Serves gRPC on `DEEPSVDD_GRPC_PORT` for the body of the block (nothing when it is 0);
    on the way out stops taking RPCs and lets those in flight finish, up to `GRACE_S`."""
    if state.settings.grpc_port == 0:
        yield
        return
    server = build_server(state, version)
    await server.start()
    log.info("gRPC on %s", address(state.settings.host, state.settings.grpc_port))
    try:
        yield
    finally:
        await server.stop(GRACE_S)
