"""Serving speed: raw ONNX Runtime, this service, a plain FastAPI endpoint and BentoML under wrk.

Scores 28x28 Fashion-MNIST test images (pre-encoded PNGs) with one trained model: raw
ONNX Runtime at batch 1 and 64, then `python -m service`, bench/serving/plain_app.py and
BentoML's adaptive batching (bench/serving/peer_bento.py, from its own environment
bench/serving/.peer-venv, made on first use), each under wrk with 64-image multipart uploads
and with single-image uploads. Writes serving.json, serving.md and serving.png
(bench/serving/report.py). Run from the repository root:
`.venv/bin/python -m bench.serving --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

from bench.harness.cputime import cpu_seconds, other_processes, process_table
from bench.harness.machine import cpu_flags, cpu_model, platform_name, python_version
from bench.serving import peer
from bench.serving import report as serving_report
from bench.serving.loads import (
    BATCH,
    BOUNDARY,
    FASHION_TEST,
    SINGLE_BODIES,
    WRK,
    Load,
    histogram_totals,
    png_bytes,
    raw_ort,
    read_idx_images,
    run_wrk,
    write_bodies,
)
from bench.serving.servers import REPO, SERVING_DIR, Server, server, servers_for
from service.cpus import affinity_cpus, available_cpus, quota_cpus
from service.settings import CPU_PROVIDER

DEFAULT_MODEL = REPO / "models/fashion-mnist-trouser/1/model.onnx"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a model.onnx file")
    parser.add_argument("--raw-seconds", type=float, default=3.0, help="per raw ORT batch size")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="wrk before measuring")
    parser.add_argument("--duration", type=int, default=20, help="seconds of each measured load")
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--single-connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="repeats; medians are reported")
    parser.add_argument("--out-dir", type=Path, default=SERVING_DIR)
    parser.add_argument(
        "--peer",
        choices=("bentoml", "none"),
        default="bentoml",
        help="the peer server measured beside the service (none: skip it)",
    )
    parser.add_argument("--peer-venv", type=Path, default=peer.PEER_VENV)
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="measure nothing: rewrite serving.md and serving.png from this serving.json",
    )
    parser.add_argument(
        "--service-dir",
        type=Path,
        default=REPO,
        help="the directory `python -m service` runs in (to compare another copy of service/)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra environment variable for the service (repeatable)",
    )
    return parser.parse_args()


def measure_load(
    target: Server, pid: int, load: Load, bodies: list[Path], args: argparse.Namespace, warm: bool
) -> dict:
    """One measured wrk run (after a warm-up run when `warm`), with the server's CPU time."""
    url = f"{target.base}/score"
    service = target.label.startswith("service")
    if warm:
        run_wrk(url, bodies, load.connections, args.wrk_threads, args.warmup_seconds)
    before = httpx.get(f"{target.base}/metrics").text if service else ""
    cpu_before = cpu_seconds(pid)
    result = run_wrk(url, bodies, load.connections, args.wrk_threads, args.duration)
    server_cpu = cpu_seconds(pid) - cpu_before
    seconds = result["duration_us"] / 1e6
    ok = result["requests"] - result["errors_status"]
    images = ok * load.images
    result.update(
        {
            "requests_per_s": result["requests"] / seconds,
            "images_per_s": images / seconds,
            "p50_ms": result["latency_p50_us"] / 1000,
            "p99_ms": result["latency_p99_us"] / 1000,
            "server_cpu_s": server_cpu,
            "server_cpu_us_per_image": 1e6 * server_cpu / images if images else None,
        }
    )
    if service:
        after = httpx.get(f"{target.base}/metrics").text
        for key, name in (
            ("batch", "deepsvdd_batch_size"),
            ("inference", "deepsvdd_inference_duration_seconds"),
            ("queue_wait", "deepsvdd_queue_wait_seconds"),
        ):
            (s1, c1), (s0, c0) = histogram_totals(after, name), histogram_totals(before, name)
            result[f"{key}_sum"], result[f"{key}_count"] = s1 - s0, c1 - c0
        runs = result["batch_count"]
        result["mean_batch"] = result["batch_sum"] / runs if runs else None
        result["ort_busy_fraction"] = result["inference_sum"] / seconds
        count = result["queue_wait_count"]
        result["mean_queue_wait_ms"] = 1000 * result["queue_wait_sum"] / count if count else None
    print(
        f"{target.label} {load.name}: {result['images_per_s']:.0f} images/s, "
        f"{result['requests_per_s']:.1f} requests/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms",
        file=sys.stderr,
    )
    return result


def score_once(url: str, body: bytes) -> list[float]:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    answer = httpx.post(url, content=body, headers=headers, timeout=30).json()
    if isinstance(answer, list):  # BentoML: the list itself
        return [float(s) for s in answer]
    if "results" in answer:
        return [r["score"] for r in answer["results"]]
    scores: list[float] = answer["scores"]
    return scores


def one_round(
    args: argparse.Namespace,
    model: Path,
    threads: int,
    batch: np.ndarray,
    running: dict[str, tuple[Server, int]],
    loads: list[Load],
    bodies: dict[str, list[Path]],
    first: bool,
) -> dict:
    """Raw ORT, then each load on each server in turn, so drifting contention hits all alike."""
    raw = {
        f"batch_{len(b)}": raw_ort(model, threads, b, args.raw_seconds) for b in (batch[:1], batch)
    }
    print(
        f"raw ORT: {raw['batch_1']['images_per_s']:.0f} images/s at batch 1, "
        f"{raw['batch_64']['images_per_s']:.0f} at batch {BATCH}",
        file=sys.stderr,
    )
    servers: dict[str, dict[str, dict]] = {label: {} for label in running}
    for load in loads:
        for label, (target, pid) in running.items():
            servers[label][load.name] = measure_load(
                target, pid, load, bodies[load.name], args, first
            )
    reference = raw["batch_64"]["images_per_s"]
    for label in servers:
        for name, result in servers[label].items():
            result["vs_raw_batch_64"] = result["images_per_s"] / reference
            result["vs_plain"] = result["images_per_s"] / servers["plain"][name]["images_per_s"]
    return {"raw_ort": raw, "servers": servers}


def median_of(results: list[dict]) -> dict:
    """Key by key: the median of numbers over the rounds; anything else from the first."""
    merged = {}
    for key, value in results[0].items():
        values = [r[key] for r in results]
        if isinstance(value, int | float) and all(isinstance(v, int | float) for v in values):
            merged[key] = statistics.median(values)
        else:
            merged[key] = value
    merged["rounds_images_per_s"] = [r["images_per_s"] for r in results]
    return merged


def summarize(rounds: list[dict], loads: list[Load]) -> dict:
    raw = {k: median_of([r["raw_ort"][k] for r in rounds]) for k in rounds[0]["raw_ort"]}
    servers = {
        label: {
            load.name: median_of([r["servers"][label][load.name] for r in rounds])
            | {"images_per_request": load.images, "connections": load.connections}
            for load in loads
        }
        for label in rounds[0]["servers"]
    }
    return {"raw_ort": raw, "servers": servers}


def machine() -> dict[str, object]:
    versions = {}
    for package in ("onnxruntime", "fastapi", "starlette", "uvicorn", "numpy", "PIL"):
        module = __import__(package)
        versions[package] = getattr(module, "__version__", "?")
    for optional in ("uvloop", "httptools"):
        try:
            versions[optional] = __import__(optional).__version__
        except ImportError:
            versions[optional] = "not installed"
    return {
        "cpu": cpu_model(),
        "flags": sorted(f for f in cpu_flags() if f in serving_report.FLAGS),
        "cpus_available": available_cpus(),
        "cpus_affinity": affinity_cpus(),
        "cpus_online": os.cpu_count(),
        "cpu_quota": quota_cpus(),
        "python": python_version(),
        "platform": platform_name(),
        "wrk": subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.split("\n")[0],
        "versions": versions,
    }


def write_outputs(report: dict, out_dir: Path) -> None:
    """serving.json first, so that the measurements survive a failure in the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report["goals"] = serving_report.goals(report)
    (out_dir / "serving.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "serving.md").write_text(serving_report.markdown(report))
    serving_report.plot(report, out_dir / "serving.png")


def main() -> None:
    args = parse_args()
    if args.from_json is not None:
        write_outputs(json.loads(args.from_json.read_text()), args.out_dir)
        return
    model = args.model.resolve()
    if not model.is_file():
        sys.exit(f"--model {args.model} is not a file")
    loadavg_before = os.getloadavg()
    processes_before = process_table()
    began = time.monotonic()
    session = ort.InferenceSession(str(model), providers=[CPU_PROVIDER])
    _, channels, height, width = session.get_inputs()[0].shape
    if (channels, height, width) != (1, 28, 28):
        sys.exit(f"--model {args.model} takes {channels}x{height}x{width}, not 1x28x28 images")
    pixels = read_idx_images(FASHION_TEST, max(BATCH, SINGLE_BODIES))
    pngs = [png_bytes(p) for p in pixels]
    batch = (pixels[:BATCH, None] / np.float32(255)).astype(np.float32)
    loads = [
        Load("batched", BATCH, args.batch_connections),
        Load("single", 1, args.single_connections),
    ]

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serve-bench-")))
        threads = available_cpus()  # raw ORT: one process, every CPU
        bodies = {
            "batched": write_bodies(tmp, pngs, BATCH, 4),
            "single": write_bodies(tmp, pngs, 1, SINGLE_BODIES),
        }
        running = {}
        targets, setups = servers_for(model, tmp, args)
        for target in targets:
            log = tmp / f"{target.label}.log"
            process = stack.enter_context(server(target, log))
            running[target.label] = (target, process.pid)
            print(f"{target.label}: serving on {target.base}", file=sys.stderr)
        scores = {
            label: np.array(score_once(f"{t.base}/score", bodies["batched"][0].read_bytes()))
            for label, (t, _) in running.items()
        }
        rounds = [
            one_round(args, model, threads, batch, running, loads, bodies, first=i == 0)
            for i in range(args.rounds)
        ]

    shown_model = str(model.relative_to(REPO)) if model.is_relative_to(REPO) else str(model)
    report: dict = {
        "model": shown_model,
        "input": f"{channels}x{height}x{width}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([".venv/bin/python", "-m", "bench.serving", *sys.argv[1:]]),
        "settings": {
            **vars(args),
            "model": shown_model,
            "out_dir": str(args.out_dir),
            "peer_venv": str(args.peer_venv),
            "service_dir": str(args.service_dir.resolve()),
        },
        "ort_threads": threads,
        "png_bytes_mean": float(np.mean([len(p) for p in pngs])),
        **summarize(rounds, loads),
        "rounds": rounds,
        "score_difference": {
            label: float(np.max(np.abs(scores["service"] - found)))
            for label, found in scores.items()
            if label != "service"
        },
        "server_setups": setups,
        "machine": machine(),
        "loadavg_before": [round(v, 2) for v in loadavg_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "wall_seconds": time.monotonic() - began,
    }
    report["other_processes"] = other_processes(processes_before, report["wall_seconds"])
    report["errors"] = {
        f"{label} {name}": sum(
            v
            for r in rounds
            for k, v in r["servers"][label][name].items()
            if k.startswith("errors_")
        )
        for label in running
        for name in (load.name for load in loads)
    }
    write_outputs(report, args.out_dir)
    print(json.dumps({"goals": report["goals"], "wall_seconds": report["wall_seconds"]}))
