"""gRPC against REST: images/s of the Open Inference Protocol over gRPC (`tritonclient.grpc`),
over REST v2 with binary tensors, and of /score (PNG uploads), for batch-64 and single-image
loads, in one run against one service process (`python -m service`, one worker, one shipped
model). Writes grpc_bench.json and grpc_bench.md beside this script. Run from the repository
root: `.venv/bin/python bench/grpc_bench.py --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import tritonclient.grpc.aio as triton_grpc
from PIL import Image

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MODEL = "fashion-mnist-sneaker"
SHAPE = (1, 28, 28)
HEADER_LENGTH = "Inference-Header-Content-Length"
PROTOCOLS = ("grpc", "rest-v2-binary", "score")
Send = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Load:
    name: str
    batch: int
    concurrency: int


@dataclass(frozen=True)
class Result:
    load: str
    protocol: str
    batch: int
    concurrency: int
    requests: int
    seconds: float
    images_per_s: float
    p50_ms: float
    p99_ms: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def service(threads: int) -> Iterator[tuple[str, str]]:
    """The service on free loopback ports, serving one shipped model: (HTTP URL, gRPC address)."""
    models = Path(tempfile.mkdtemp(prefix="grpc-bench-"))
    shutil.copytree(REPO / "models" / MODEL, models / MODEL)
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSVDD_")}
    env.update(
        DEEPSVDD_MODELS_DIR=str(models),
        DEEPSVDD_PORT=str(http_port),
        DEEPSVDD_GRPC_PORT=str(grpc_port),
        DEEPSVDD_WORKERS="1",
        DEEPSVDD_PROVIDERS="CPUExecutionProvider",
        DEEPSVDD_INTRA_OP_THREADS=str(threads),
        DEEPSVDD_LOG_LEVEL="warning",
    )
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready(url, process)
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(models, ignore_errors=True)


def wait_ready(url: str, process: subprocess.Popen[bytes], deadline_s: float = 120.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} was not ready within {deadline_s} s")


def pixels(batch: int, seed: int) -> np.ndarray:
    """`batch` random 8-bit grey images as the model's input, float32 (batch, 1, 28, 28) / 255."""
    values = np.random.default_rng(seed).integers(0, 256, size=(batch, *SHAPE), dtype=np.uint8)
    return values.astype(np.float32) / 255.0


def pngs(images: np.ndarray) -> list[bytes]:
    encoded = []
    for image in images:
        out = io.BytesIO()
        Image.fromarray(np.rint(image[0] * 255).astype(np.uint8), "L").save(out, "PNG")
        encoded.append(out.getvalue())
    return encoded


async def grpc_sender(
    address: str, images: np.ndarray
) -> tuple[Send, Callable[[], Awaitable[None]]]:
    client = triton_grpc.InferenceServerClient(address)
    tensor = triton_grpc.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    outputs = [triton_grpc.InferRequestedOutput("score")]

    async def send() -> None:
        result = await client.infer(MODEL, [tensor], outputs=outputs)
        assert result.as_numpy("score").shape == (images.shape[0],)

    return send, client.close


def rest_v2_sender(http: httpx.AsyncClient, images: np.ndarray) -> Send:
    data = images.tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": list(images.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": "score", "parameters": {"binary_data": True}}],
        }
    )
    headers = {HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"}
    body = header + data

    async def send() -> None:
        response = await http.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
        response.raise_for_status()

    return send


def score_sender(http: httpx.AsyncClient, images: np.ndarray) -> Send:
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(pngs(images))]

    async def send() -> None:
        response = await http.post("/score", params={"model": MODEL}, files=files)
        response.raise_for_status()

    return send


async def measure(send: Send, load: Load, protocol: str, seconds: float) -> Result:
    """`load.concurrency` closed-loop clients sending for `seconds`, after a warm-up."""
    for _ in range(3):
        await send()
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < end:
            began = time.perf_counter()
            await send()
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(load.concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return Result(
        load=load.name,
        protocol=protocol,
        batch=load.batch,
        concurrency=load.concurrency,
        requests=len(latencies),
        seconds=round(elapsed, 2),
        images_per_s=round(len(latencies) * load.batch / elapsed, 1),
        p50_ms=round(statistics.median(ordered) * 1000, 2),
        p99_ms=round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2),
    )


async def run_load(url: str, address: str, load: Load, seconds: float) -> list[Result]:
    images = pixels(load.batch, seed=load.batch)
    results = []
    limits = httpx.Limits(max_connections=load.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        send, close = await grpc_sender(address, images)
        try:
            results.append(await measure(send, load, "grpc", seconds))
        finally:
            await close()
        results.append(await measure(rest_v2_sender(http, images), load, PROTOCOLS[1], seconds))
        results.append(await measure(score_sender(http, images), load, PROTOCOLS[2], seconds))
    return results


def machine() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
    }


def report(results: list[Result], setup: dict[str, object]) -> str:
    host = setup["machine"]
    assert isinstance(host, dict)
    lines = [
        "# gRPC against REST: images/s",
        "",
        "Written by `bench/grpc_bench.py`: one service process (one worker, "
        f"{setup['threads']} ONNX Runtime thread(s), CPU) serving `{MODEL}`; closed-loop "
        f"asyncio clients in one process for {setup['seconds']} s per cell; gRPC through "
        "`tritonclient.grpc.aio` (raw tensors), REST v2 with the binary tensor extension, and "
        "/score with PNG uploads (decoded by the service). "
        f"Machine: {host['cpus']} CPUs (shared: load average {host['load_average']} at the "
        f"start), Python {host['python']}, {setup['date']}.",
        "",
        "| load | protocol | batch | clients | requests | images/s | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.load} | {r.protocol} | {r.batch} | {r.concurrency} | {r.requests} | "
            f"{r.images_per_s:g} | {r.p50_ms:g} | {r.p99_ms:g} |"
        )
    lines += [
        "",
        "The clients run on the same CPUs as the service, and each protocol's client costs "
        "its own CPU: grpcio's C core per RPC, httpx (pure Python) per HTTP request. The "
        "gaps are what a Python client sees end to end, not the server's alone.",
        "",
        "gRPC's images/s relative to the others, per load:",
        "",
    ]
    for load in dict.fromkeys(r.load for r in results):
        rates = {r.protocol: r.images_per_s for r in results if r.load == load}
        ratios = ", ".join(
            f"{rates['grpc'] / rates[p]:.2f}x {p}" for p in PROTOCOLS[1:] if rates.get(p)
        )
        lines.append(f"- {load}: {ratios}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--batch", type=int, default=64, help="images per batched request")
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--single-clients", type=int, default=16)
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="where the results go")
    args = parser.parse_args(argv)
    loads = [
        Load(f"batch-{args.batch}", args.batch, args.batch_clients),
        Load("single-image", 1, args.single_clients),
    ]
    setup: dict[str, object] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": MODEL,
        "seconds": args.seconds,
        "threads": args.threads,
        "machine": machine(),
    }
    results: list[Result] = []
    with service(args.threads) as (url, address):
        for load in loads:
            results += asyncio.run(run_load(url, address, load, args.seconds))
    payload = {"setup": setup, "results": [asdict(r) for r in results]}
    (args.out / "grpc_bench.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "grpc_bench.md").write_text(report(results, setup))
    print(report(results, setup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
