"""Shadow scoring's cost: /score images/s of one service process (`python -m service`, one
worker) serving version 1 of a shipped model, with and without version 2 (the same graph) as
its shadow, for batched and single-image loads, the two settings alternating. Writes
shadow_cost.json and shadow_cost.md beside this script. Run from the repository root:
`.venv/bin/python -m bench.shadow_cost --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.harness.cputime import cpu_seconds, other_processes, process_table
from bench.harness.load import Load, Timings, add_load_options, closed_loop, loads_from
from bench.harness.machine import machine_record
from bench.harness.metrics import metric_value_or_zero
from bench.harness.processes import ROOT
from bench.harness.results import write_json, write_text
from bench.harness.servers import AUTH, ServerProcess, served
from bench.shadow_cost.report import Cell, report
from modelfile import MODEL_FILE
from modelfile.metadata import METADATA_KEY
from modelfile.onnx_props import read_props, set_prop

OUT = Path(__file__).resolve().parent
MODEL = "fashion-mnist-sneaker"
PRIMARY = {"weights": {"1": 100}}
SHADOWED = {"weights": {"1": 100}, "shadow": 2}


def write_versions(models: Path) -> None:
    """The shipped model as version 1, and the same graph relabelled as version 2."""
    shutil.copytree(ROOT / "models" / MODEL, models / MODEL)
    data = (models / MODEL / "1" / MODEL_FILE).read_bytes()
    meta = json.loads(read_props(data)[METADATA_KEY])
    (models / MODEL / "2").mkdir()
    relabelled = set_prop(data, METADATA_KEY, json.dumps({**meta, "version": 2}))
    (models / MODEL / "2" / MODEL_FILE).write_bytes(relabelled)


@contextmanager
def service(threads: int) -> Iterator[ServerProcess]:
    with tempfile.TemporaryDirectory(prefix="shadow-cost-") as tmp:
        models = Path(tmp) / "models"
        write_versions(models)
        with served(models, Path(tmp), DEEPSVDD_INTRA_OP_THREADS=str(threads)) as server:
            yield server


def pngs(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    encoded = []
    for _ in range(count):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(out, "PNG")
        encoded.append(out.getvalue())
    return encoded


def shadow_totals(http: httpx.Client) -> tuple[float, float]:
    """Images the shadow scored and shadow batches dropped, so far."""
    text = http.get("/metrics").text
    scored = metric_value_or_zero(text, "deepsvdd_shadow_images_total", model=MODEL, version="2")
    dropped = sum(
        metric_value_or_zero(text, "deepsvdd_shadow_dropped_total", model=MODEL, reason=reason)
        for reason in ("busy", "error", "non_finite")
    )
    return scored, dropped


async def shadow_load(
    server: ServerProcess, batch: int, clients: int, seconds: float
) -> tuple[Timings, float]:
    """`clients` clients posting `batch` PNGs each for `seconds`, after a warm-up: the timings,
    and the service's CPU seconds when the measured part began."""
    files = [("files", (f"{i}.png", d, "image/png")) for i, d in enumerate(pngs(batch, batch))]
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:

        async def send() -> None:
            response = await http.post("/score", params={"model": MODEL}, files=files)
            response.raise_for_status()

        for _ in range(3):
            await http.post("/score", params={"model": MODEL}, files=files)
        await asyncio.sleep(0.5)  # the warm-up's shadow batches
        cpu = cpu_seconds(server.pid)
        return await closed_loop(send, clients, seconds, warmup=0), cpu


def measure(server: ServerProcess, load: Load, shadow: bool, round_: int, seconds: float) -> Cell:
    name, batch, clients = load.name, load.batch, load.concurrency
    with httpx.Client(base_url=server.url, timeout=60) as http:
        policy = SHADOWED if shadow else PRIMARY
        answer = http.put(f"/admin/models/{MODEL}/traffic", json=policy, headers=AUTH)
        answer.raise_for_status()
        before = shadow_totals(http)
        timings, cpu = asyncio.run(shadow_load(server, batch, clients, seconds))
        time.sleep(0.5)  # the shadow batches still in flight
        cpu = cpu_seconds(server.pid) - cpu
        after = shadow_totals(http)
    return Cell(
        load=name,
        shadow=shadow,
        round=round_,
        batch=batch,
        clients=clients,
        requests=timings.requests,
        seconds=round(timings.elapsed, 2),
        images_per_s=round(timings.requests * batch / timings.elapsed, 1),
        p50_ms=round(timings.p50() * 1000, 2),
        cpu_ms_per_image=round(cpu * 1000 / (timings.requests * batch), 3),
        shadow_images=after[0] - before[0],
        shadow_dropped=after[1] - before[1],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.shadow_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs per load")
    add_load_options(parser, batch=64, batch_clients=2, single_clients=8)
    parser.add_argument("--out", type=Path, default=OUT, help="where the results go")
    args = parser.parse_args(argv)
    setup: dict[str, object] = {
        "command": " ".join(["python -m bench.shadow_cost", *(argv or sys.argv[1:])]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": MODEL,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "threads": args.threads,
        "machine": machine_record(),
    }
    cells: list[Cell] = []
    before, started = process_table(), time.monotonic()
    with service(args.threads) as server:
        for load in loads_from(args):
            for round_ in range(1, args.rounds + 1):
                for shadow in (False, True):
                    cells.append(measure(server, load, shadow, round_, args.seconds))
    setup["others"] = other_processes(before, round(time.monotonic() - started, 1))
    write_json(args.out / "shadow_cost.json", {"setup": setup, "cells": [asdict(c) for c in cells]})
    write_text(args.out / "shadow_cost.md", report(cells, setup))
    print(report(cells, setup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
