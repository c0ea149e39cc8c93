"""Drift and traces on and off: /score images/s of 28x28 PNG uploads, batched and single-image,
against one service process per configuration (drift off, drift on, traces to a local OTLP/HTTP
receiver, both), the configurations taking turns over a few rounds. Writes
observability_cost.json and observability_cost.md beside this script. Run from the repository
root: `.venv/bin/python -m bench.observability_cost --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import httpx

from bench.harness.images import png
from bench.harness.load import Load, add_load_options, closed_loop, loads_from
from bench.harness.machine import machine_record
from bench.harness.otlp import Receiver, receiving
from bench.harness.processes import ROOT
from bench.harness.results import write_json, write_text
from bench.harness.servers import served
from bench.observability_cost.inprocess import drift_costs, load_model, trace_costs
from bench.observability_cost.report import CONFIGS, Result, report

OUT = Path(__file__).resolve().parent
MODEL = "fashion-mnist-sneaker"


def environment(config: str, endpoint: str) -> dict[str, str]:
    """The service's variables for a configuration: drift by its window, traces by OTEL_*."""
    env = {"DEEPSVDD_DRIFT_WINDOW": "1000" if "drift" in config else "0"}
    if "traces" in config:
        env |= {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
    return env


@contextmanager
def one_model() -> Iterator[Path]:
    """A repository holding a copy of the shipped model."""
    with tempfile.TemporaryDirectory(prefix="observability-cost-") as tmp:
        models = Path(tmp) / "models"
        shutil.copytree(ROOT / "models" / MODEL, models / MODEL)
        yield models


def in_process(batch: int, endpoint: str) -> dict[str, float]:
    """The in-process costs (bench.observability_cost.inprocess) of one request."""
    with one_model() as models:
        model = load_model(models)
        single = drift_costs(model, 1)
        batched = {f"{k}_batch": v for k, v in drift_costs(model, batch).items()}
        return {**single, **batched, **trace_costs(model, endpoint)}


@contextmanager
def service(config: str, endpoint: str, threads: int) -> Iterator[str]:
    """The service serving one shipped model with `config`; its URL."""
    with one_model() as models:
        env = environment(config, endpoint)
        env["DEEPSVDD_INTRA_OP_THREADS"] = str(threads)
        with served(models, models.parent, environ=env) as server:
            yield server.url


async def measure(url: str, load: Load, seconds: float) -> tuple[int, float, float]:
    """Closed-loop clients for `seconds` after a warm-up: requests, images/s, p50 ms."""
    files = [("files", (f"{i}.png", png(i), "image/png")) for i in range(load.batch)]
    limits = httpx.Limits(max_connections=load.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def send() -> None:
            response = await http.post("/score", params={"model": MODEL}, files=files)
            response.raise_for_status()

        timings = await closed_loop(send, load.concurrency, seconds, warmup=5)
    rate = timings.requests * load.batch / timings.elapsed
    return timings.requests, round(rate, 1), round(timings.p50() * 1000, 2)


def run_round(
    round_: int, loads: list[Load], seconds: float, threads: int, endpoint: str
) -> list[Result]:
    """Every configuration once, in an order rotated by the round, each with every load."""
    shift = round_ % len(CONFIGS)
    results = []
    for config in CONFIGS[shift:] + CONFIGS[:shift]:
        with service(config, endpoint, threads) as url:
            for load in loads:
                requests, rate, p50 = asyncio.run(measure(url, load, seconds))
                results.append(Result(config, load.name, round_, requests, rate, p50))
                print(f"round {round_} {config:13} {load.name:13} {rate:8.1f} images/s", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.observability_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--rounds", type=int, default=3, help="turns of every configuration")
    add_load_options(parser, batch=32, batch_clients=4, single_clients=8)
    parser.add_argument("--note", default="nothing else said about the machine's other load")
    parser.add_argument("--out", type=Path, default=OUT, help="where the results go")
    args = parser.parse_args(argv)
    loads = loads_from(args)
    setup: dict[str, object] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": MODEL,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "threads": args.threads,
        "note": args.note,
        "machine": machine_record(),
    }
    results: list[Result] = []
    with receiving(Receiver()) as receiver:
        for round_ in range(args.rounds):
            results += run_round(round_, loads, args.seconds, args.threads, receiver.endpoint)
        setup["exported"] = {"requests": receiver.exports, "bytes": receiver.received}
        setup["in_process_us"] = in_process(args.batch, receiver.endpoint)
    payload = {"setup": setup, "results": [asdict(r) for r in results]}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "observability_cost.json", payload, indent=2)
    write_text(args.out / "observability_cost.md", report(results, setup))
    print(report(results, setup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
