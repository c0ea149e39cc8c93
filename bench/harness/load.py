"""Closed-loop asyncio load: clients that each send one request at a time until a deadline, and
the latencies and elapsed time that the experiments' images/s and percentiles come from."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Send = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Load:
    """A named load: images per request and closed-loop clients."""

    name: str
    batch: int
    concurrency: int


def add_load_options(
    parser: argparse.ArgumentParser, batch: int, batch_clients: int, single_clients: int
) -> None:
    """--threads, --batch, --batch-clients and --single-clients, with these defaults."""
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--batch", type=int, default=batch, help="images per batched request")
    parser.add_argument("--batch-clients", type=int, default=batch_clients)
    parser.add_argument("--single-clients", type=int, default=single_clients)


def loads_from(args: argparse.Namespace) -> list[Load]:
    """The batched load and the single-image load that add_load_options describes."""
    return [
        Load(f"batch-{args.batch}", args.batch, args.batch_clients),
        Load("single-image", 1, args.single_clients),
    ]


@dataclass
class Timings:
    """What a closed loop measured: requests answered, elapsed seconds, each latency (s)."""

    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def p50(self) -> float:
        return statistics.median(self.latencies)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def closed_loop(send: Send, clients: int, seconds: float, warmup: int = 3) -> Timings:
    """`warmup` sends, then `clients` clients each sending one request at a time for `seconds`."""
    for _ in range(warmup):
        await send()
    timings = Timings()
    end = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < end:
            began = time.perf_counter()
            await send()
            timings.latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    timings.elapsed = time.perf_counter() - started
    return timings
