"""`grpc.health.v1.Health` for Kubernetes' gRPC probes: SERVING only while the service is
ready and not draining to stop, for the whole server ("") and for the inference service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.oip_grpc.messages import SERVICE

# How often a Watch stream looks at readiness, to send each change.
WATCH_INTERVAL_S = 0.5
SERVICES = ("", SERVICE)
_Status = health_pb2.HealthCheckResponse.ServingStatus


class HealthServicer(health_pb2_grpc.HealthServicer):
    """Health read from `serving()` at each call, never stored, so it cannot go stale."""

    def __init__(self, serving: Callable[[], bool]) -> None:
        self._serving = serving

    def _status(self, service: str) -> Any:
        if service not in SERVICES:
            return _Status.SERVICE_UNKNOWN
        return _Status.SERVING if self._serving() else _Status.NOT_SERVING

    async def Check(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._status(request.service)
        if status == _Status.SERVICE_UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """The status now, then each change, until the client goes or the server stops."""
        last = None
        while True:
            status = self._status(request.service)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL_S)
