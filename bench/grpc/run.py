"""gRPC against REST: images/s of the Open Inference Protocol over gRPC (`tritonclient.grpc`),
over REST v2 with binary tensors, and of /score (PNG uploads), for batch-64 and single-image
loads, in one run against one service process (`python -m service`, one worker, one shipped
model). Writes grpc.json and grpc.md beside this script. Run from the repository root:
`.venv/bin/python -m bench.grpc --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import httpx
import numpy as np
import orjson
import tritonclient.grpc.aio as triton_grpc
from PIL import Image

from bench.grpc.report import PROTOCOLS, Result, report
from bench.harness.load import Load, Send, add_load_options, closed_loop, loads_from
from bench.harness.machine import machine_record
from bench.harness.processes import ROOT, free_port
from bench.harness.results import write_json, write_text
from bench.harness.servers import served

OUT = Path(__file__).resolve().parent
MODEL = "fashion-mnist-sneaker"
SHAPE = (1, 28, 28)
HEADER_LENGTH = "Inference-Header-Content-Length"


@contextmanager
def service(threads: int) -> Iterator[tuple[str, str]]:
    """The service on free loopback ports, serving one shipped model: (HTTP URL, gRPC address)."""
    with tempfile.TemporaryDirectory(prefix="grpc-bench-") as tmp:
        models = Path(tmp) / "models"
        shutil.copytree(ROOT / "models" / MODEL, models / MODEL)
        grpc_port = free_port()
        with served(
            models,
            Path(tmp),
            DEEPSVDD_GRPC_PORT=str(grpc_port),
            DEEPSVDD_INTRA_OP_THREADS=str(threads),
        ) as server:
            yield server.url, f"127.0.0.1:{grpc_port}"


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
    timings = await closed_loop(send, load.concurrency, seconds)
    return Result(
        load=load.name,
        protocol=protocol,
        batch=load.batch,
        concurrency=load.concurrency,
        requests=timings.requests,
        seconds=round(timings.elapsed, 2),
        images_per_s=round(timings.requests * load.batch / timings.elapsed, 1),
        p50_ms=round(timings.p50() * 1000, 2),
        p99_ms=round(timings.p99() * 1000, 2),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.grpc", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell")
    add_load_options(parser, batch=64, batch_clients=4, single_clients=16)
    parser.add_argument("--out", type=Path, default=OUT, help="where the results go")
    args = parser.parse_args(argv)
    setup: dict[str, object] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": MODEL,
        "seconds": args.seconds,
        "threads": args.threads,
        "machine": machine_record(),
    }
    results: list[Result] = []
    with service(args.threads) as (url, address):
        for load in loads_from(args):
            results += asyncio.run(run_load(url, address, load, args.seconds))
    payload = {"setup": setup, "results": [asdict(r) for r in results]}
    write_json(args.out / "grpc.json", payload, indent=2)
    write_text(args.out / "grpc.md", report(results, setup))
    print(report(results, setup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
