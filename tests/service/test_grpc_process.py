"""gRPC in the service process (`python -m service`): every uvicorn worker listens on the one
gRPC port, and on SIGTERM readiness fails first while RPCs are still answered, the RPCs in
flight when the drain ends get their answers, and the process exits 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2

from tests.service.test_grpc import health
from tests.support.models import ModelRepo
from tests.support.servers import free_port, served

DRAIN_S = 1.0
# A lone image waits this long for company: the RPC is still in flight when the drain ends.
MAX_DELAY_MS = 2000


def listeners(port: int) -> int:
    """TCP sockets listening on `port`, from /proc/net (gRPC binds 127.0.0.1 as a v4-mapped
    IPv6 socket)."""
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            count += int(local.rsplit(":", 1)[1], 16) == port and state == "0A"
    return count


def image_input(count: int) -> triton.InferInput:
    batch = np.full((count, 1, 28, 28), 0.5, dtype=np.float32)
    entry = triton.InferInput("image", list(batch.shape), "FP32")
    entry.set_data_from_numpy(batch)
    return entry


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_every_worker_serves_grpc_and_drains_on_sigterm(
    model_repo: ModelRepo, tmp_path: Path, workers: int
) -> None:
    port = free_port()
    url = f"127.0.0.1:{port}"
    with served(
        model_repo.path,
        tmp_path,
        DEEPSVDD_GRPC_PORT=str(port),
        DEEPSVDD_WORKERS=str(workers),
        DEEPSVDD_DRAIN_S=str(DRAIN_S),
        DEEPSVDD_MAX_DELAY_MS=str(MAX_DELAY_MS),
    ) as server:
        end = time.monotonic() + 30
        while listeners(port) < workers:  # ready is one worker; the others may still start
            assert time.monotonic() < end, server.log_text()
            time.sleep(0.1)
        assert listeners(port) == workers
        client = triton.InferenceServerClient(url)
        assert client.is_server_ready() and health(url) == health_pb2.HealthCheckResponse.SERVING
        in_flight: list[np.ndarray] = []

        def infer() -> None:
            in_flight.append(client.infer("digits", [image_input(1)]).as_numpy("score"))

        server.process.send_signal(signal.SIGTERM)
        end = time.monotonic() + DRAIN_S
        while health(url) != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < end, "readiness still passes after SIGTERM"
            time.sleep(0.02)
        assert not client.is_server_ready()
        rpc = threading.Thread(target=infer)
        rpc.start()
        assert server.process.wait(timeout=30) == 0, server.log_text()
        rpc.join(timeout=30)
        client.close()
    assert in_flight and in_flight[0].shape == (1,)
    assert listeners(port) == 0
