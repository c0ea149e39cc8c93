"""Soak: minutes of mixed traffic against `python -m service`, watching its memory and fds.

Clients send good images, corrupt images, bodies over the limit, unsupported media types,
unknown models, reloads, reads, and uploads cut off mid-body (the mix of
bench/harness/traffic.py, whose short version runs in the normal suite). The server's
RSS, open file descriptors and threads are read from /proc every few seconds. Writes
soak.md (start / end / max and the fitted slope of each) and soak.png (the curves). Run from
the repository root: `.venv/bin/python -m bench.soak --help`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.harness.machine import cpu_model, python_version
from bench.harness.processes import ROOT
from bench.harness.servers import served
from bench.harness.traffic import MIX, Traffic, merge, mixed_traffic, sample

OUT = Path(__file__).resolve().parent
MAX_BODY_BYTES = 256 * 1024
MIB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--minutes", type=float, default=6.0, help="measured traffic")
    parser.add_argument("--warmup-seconds", type=float, default=20.0, help="before the baseline")
    parser.add_argument("--clients", type=int, default=3, help="client threads")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between samples")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    return parser.parse_args()


def run_clients(server: Any, seconds: float, clients: int, seed: int) -> Traffic:
    results: list[Traffic] = []

    def client(index: int) -> None:
        traffic = mixed_traffic(server, seconds, seed=seed + index, oversize=MAX_BODY_BYTES + 4096)
        results.append(traffic)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return merge(results)


def slope_per_minute(minutes: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of `values` against `minutes`."""
    return float(np.polyfit(minutes, values, 1)[0])


def write_report(
    args: argparse.Namespace,
    samples: list[dict[str, float]],
    settled: dict[str, float],
    traffic: Traffic,
    seconds: float,
) -> None:
    """`traffic`: warm-up and measured; `seconds`: the measured part."""
    total = seconds + args.warmup_seconds
    minutes = np.array([s["t"] for s in samples]) / 60.0
    series = {
        "RSS (MiB)": np.array([s["rss"] for s in samples]) / MIB,
        "open fds": np.array([s["fds"] for s in samples], dtype=float),
        "threads": np.array([s["threads"] for s in samples], dtype=float),
    }
    settled_values = {
        "RSS (MiB)": settled["rss"] / MIB,
        "open fds": settled["fds"],
        "threads": settled["threads"],
    }
    rows = [
        f"| {name} | {v[0]:.1f} | {v[-1]:.1f} | {v.max():.1f} | {settled_values[name]:.1f} | "
        f"{slope_per_minute(minutes, v):+.3f} |"
        for name, v in series.items()
    ]
    by_kind: dict[str, dict[int, int]] = {}
    for (kind, status), count in sorted(traffic.counts.items()):
        by_kind.setdefault(kind, {})[status] = count
    kind_rows = [
        f"| {kind} | {MIX[kind]} | "
        + ", ".join(f"{status or 'cut'}: {n}" for status, n in statuses.items())
        + " |"
        for kind, statuses in by_kind.items()
    ]
    command = "  .venv/bin/python -m bench.soak " + shlex.join(sys.argv[1:])
    text = "\n".join(
        [
            "# Soak: mixed traffic against `python -m service`",
            "",
            f"{dt.date.today().isoformat()}, {cpu_model()}, Python {python_version()}; "
            f"{args.clients} client threads for "
            f"{seconds / 60:.1f} minutes after a {args.warmup_seconds:.0f} s warm-up; the "
            f"shipped models of `{args.models_dir.name}/`; max body {MAX_BODY_BYTES} bytes.",
            "",
            f"{traffic.requests} requests ({traffic.requests / total:.1f}/s, warm-up included); "
            "answers outside "
            f"the expected statuses: {len(traffic.unexpected)}; 5xx: {traffic.server_errors()}.",
            "",
            "## The server process (from /proc, every "
            f"{args.interval:g} s; slope: least-squares fit per minute)",
            "",
            "| | start | end | max | after the clients left | slope / min |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            "## Traffic (kind, weight out of 100, answers by status)",
            "",
            "| kind | weight | answers |",
            "| --- | ---: | --- |",
            *kind_rows,
            "",
            "Reproduce:",
            "",
            command,
            "",
            "`soak.png` plots the three series.",
            "",
        ]
    )
    (args.out_dir / "soak.md").write_text(text)

    figure = Figure(figsize=(9, 7), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, 1, sharex=True)
    for ax, (name, values) in zip(axes, series.items(), strict=True):
        ax.plot(minutes, values, marker=".", linewidth=1)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_title("deepsvdd-serve under mixed traffic (good, bad, oversize, cut, reloads)")
    axes[-1].set_xlabel("minutes of measured traffic")
    figure.savefig(args.out_dir / "soak.png", dpi=110)


def main() -> None:
    args = parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    env = {"DEEPSVDD_MAX_BODY_BYTES": str(MAX_BODY_BYTES), "DEEPSVDD_BODY_TIMEOUT_S": "5"}
    with (
        tempfile.TemporaryDirectory() as logs,
        served(args.models_dir, Path(logs), **env) as server,
    ):
        print(f"warming up for {args.warmup_seconds:g} s", flush=True)
        warm = run_clients(server, args.warmup_seconds, args.clients, seed=1000)
        samples: list[dict[str, float]] = []
        done = threading.Event()
        began = time.monotonic()

        def watch() -> None:
            while not done.is_set():
                samples.append({"t": time.monotonic() - began, **sample(server)})
                done.wait(args.interval)

        watcher = threading.Thread(target=watch)
        watcher.start()
        seconds = args.minutes * 60
        print(f"soaking for {args.minutes:g} minutes", flush=True)
        traffic = run_clients(server, seconds, args.clients, seed=0)
        done.set()
        watcher.join()
        time.sleep(5)  # closing sockets and retiring batchers take a moment
        settled = sample(server)
        if "Traceback" in server.log_text():
            print("the server logged a traceback:\n" + server.log_text()[-3000:], file=sys.stderr)
    write_report(args, samples, settled, merge([warm, traffic]), seconds)
    print(f"wrote {args.out_dir / 'soak.md'} and {args.out_dir / 'soak.png'}")
