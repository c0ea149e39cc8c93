"""Serving speed on photographs: `python -m bench.serving --photos`.

JPEG photographs (bench/serving/photos.py) of about 1 and 12 megapixels, grey and RGB, scored
by 128x128 models: this service with the model's reduced decode and with the full decode
(what every model before had), the plain FastAPI endpoint, BentoML, raw ONNX Runtime at batch
64, and the limit (bench/serving/limit.py), all in one run. Writes photos.json, photos.md and
photos.png (bench/serving/photo_report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness.cputime import other_processes, process_table
from bench.serving import limit, peer, photo_report
from bench.serving.limit import MAX_PIXELS
from bench.serving.loads import Kind, Load, raw_ort, write_bodies
from bench.serving.photo_models import photo_model, with_decode
from bench.serving.photos import PhotoSet, photo_set
from bench.serving.run import machine, measure_load, median_of, score_once
from bench.serving.servers import (
    SERVING_DIR,
    Server,
    model_repository,
    server,
    servers_for,
    service_extra,
    service_server,
    service_workers,
)
from modelfile.layout import open_model
from modelfile.pixels import to_input
from service.cpus import available_cpus
from service.decoding import decode_pixels

JPEG = Kind("photo", "jpg", "image/jpeg")
BODIES = 4  # different request bodies each load cycles through
MAX_BODY = str(256 * 1024 * 1024)  # eight 12 MP JPEGs exceed the service's default 32 MiB


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving --photos", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--cases",
        default="L:L,L:RGB,RGB:RGB",
        help="MODEL:JPEG colour pairs (L or RGB), comma-separated",
    )
    parser.add_argument("--megapixels", default="1,12", help="photograph sizes, comma-separated")
    parser.add_argument("--per-request", type=int, default=8, help="photographs a batched request")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=6, help="seconds of each measured load")
    parser.add_argument(
        "--large-duration", type=int, default=20, help="--duration for photographs over 2 MP"
    )
    parser.add_argument(
        "--large-connections", type=int, default=2, help="--connections for photographs over 2 MP"
    )
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--raw-seconds", type=float, default=2.0, help="raw ORT batch 64")
    parser.add_argument("--limit-seconds", type=float, default=4.0, help="each limit")
    parser.add_argument(
        "--large-limit-seconds", type=float, default=12.0, help="each limit over 2 MP"
    )
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="repeats; medians are reported")
    parser.add_argument("--peer", choices=("bentoml", "none"), default="bentoml")
    parser.add_argument("--peer-venv", type=Path, default=peer.PEER_VENV)
    parser.add_argument("--service-dir", type=Path, default=SERVING_DIR.parents[1])
    parser.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="keep the trained 128x128 models here and reuse them (default: a temporary one)",
    )
    parser.add_argument("--out-dir", type=Path, default=SERVING_DIR)
    parser.add_argument("--from-json", type=Path, default=None, help="rewrite photos.md/png")
    args = parser.parse_args(argv)
    args.case_list = [tuple(c.split(":")) for c in args.cases.split(",")]
    if any(len(c) != 2 or not set(c) <= {"L", "RGB"} for c in args.case_list):
        parser.error(f"--cases {args.cases!r}: each must be MODEL:JPEG with L or RGB")
    args.sizes = [float(m) for m in args.megapixels.split(",")]
    args.service_env = [f"DEEPSVDD_MAX_BODY_BYTES={MAX_BODY}", *args.service_env]
    return args


LARGE_MP = 2.0


def loads_for(size: float, args: argparse.Namespace) -> list[Load]:
    """Batched and single-image loads; photographs over LARGE_MP get --large-connections (a
    request of eight 12 MP photographs takes seconds on a shared machine)."""
    connections = args.connections if size <= LARGE_MP else args.large_connections
    return [Load("batched", args.per_request, connections), Load("single", 1, connections)]


def decoded_batch(model: Path, photos: PhotoSet, count: int = 64) -> np.ndarray:
    """`count` of the photographs decoded for `model` (under its policy): raw ORT's input."""
    _, meta = open_model(model)
    pixels = [
        decode_pixels(
            photos.jpegs[i % len(photos.jpegs)], "photo", meta.input, MAX_PIXELS, meta.decode
        )
        for i in range(count)
    ]
    return to_input(pixels)


def case_servers(
    variants: dict[str, Path], tmp: Path, args: argparse.Namespace
) -> tuple[list[Server], dict[str, str]]:
    """The service with the reduced decode, the service with the full decode, plain and peer
    (plain decodes as it always does; the peer, with the service's decoder, reduced)."""
    servers, setups = servers_for(variants["reduced"], tmp, args)
    full_repository = model_repository(variants["full"], tmp / "models-full")
    today = service_server("service-full", full_repository, service_extra(args), args)
    setups["service-full"] = setups["service"] + ", the model's decode policy set to full"
    setups["service"] += ", the model's decode policy set to reduced"
    return [servers[0], today, *servers[1:]], setups


def one_round(
    args: argparse.Namespace,
    variants: dict[str, Path],
    sets: dict[float, PhotoSet],
    running: dict[str, tuple[Server, int]],
    bodies: dict[float, dict[str, list[Path]]],
    loads: dict[float, list[Load]],
    first: bool,
) -> dict:
    """Raw ORT and the limits, then each size, load and server in turn."""
    cpus = available_cpus()
    decoders = service_workers(service_extra(args)) * max(2, cpus)  # the service's threads
    reduced, full = variants["reduced"], variants["full"]
    batch = decoded_batch(reduced, sets[args.sizes[0]])
    found: dict = {"raw_ort_batch_64": raw_ort(reduced, cpus, batch, args.raw_seconds), "sizes": {}}
    for size, photos in sets.items():
        jpegs = list(photos.jpegs)
        seconds = args.limit_seconds if size <= LARGE_MP else args.large_limit_seconds
        entry: dict = {
            "limit": limit.decode_and_score(reduced, jpegs, decoders, seconds),
            "limit_full": limit.decode_and_score(full, jpegs, decoders, seconds),
            "decode_ms": {
                "reduced": limit.decode_ms(reduced, jpegs, 2 * len(jpegs)),
                "full": limit.decode_ms(full, jpegs, 2 * len(jpegs)),
            },
            "servers": {label: {} for label in running},
        }
        print(
            f"{photos.label}: limit {entry['limit']['images_per_s']:.0f} images/s "
            f"(full decode {entry['limit_full']['images_per_s']:.0f})",
            file=sys.stderr,
        )
        timed = argparse.Namespace(**vars(args))
        timed.duration = args.duration if size <= LARGE_MP else args.large_duration
        for load in loads[size]:
            for label, (target, pid) in running.items():
                measured = measure_load(target, pid, load, bodies[size][load.name], timed, first)
                entry["servers"][label][load.name] = measured | {
                    "images_per_request": load.images,
                    "connections": load.connections,
                }
        found["sizes"][f"{size:g}"] = entry
    return found


def run_case(args: argparse.Namespace, models: dict[str, Path], case: tuple[str, str]) -> dict:
    """One model colour and one JPEG colour: its servers started once, `args.rounds` rounds."""
    model_color, jpeg_color = case
    sets = {size: photo_set(size, jpeg_color) for size in args.sizes}
    loads = {size: loads_for(size, args) for size in args.sizes}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="photo-bench-")))
        variants = {
            policy: with_decode(models[model_color], policy, tmp / policy)
            for policy in ("reduced", "full")
        }
        bodies = {}
        for size, photos in sets.items():
            where = tmp / f"bodies-{size:g}"
            where.mkdir()
            bodies[size] = {
                load.name: write_bodies(where, list(photos.jpegs), load.images, BODIES, JPEG)
                for load in loads[size]
            }
        targets, setups = case_servers(variants, tmp, args)
        running = {}
        for target in targets:
            process = stack.enter_context(server(target, tmp / f"{target.label}.log"))
            running[target.label] = (target, process.pid)
        first_body = bodies[args.sizes[0]]["batched"][0].read_bytes()
        scores = {
            label: np.array(score_once(f"{t.base}/score", first_body))
            for label, (t, _) in running.items()
        }
        rounds = [
            one_round(args, variants, sets, running, bodies, loads, first=i == 0)
            for i in range(args.rounds)
        ]
    return {
        "model_color": model_color,
        "jpeg_color": jpeg_color,
        "photos": {
            f"{size:g}": {
                "names": list(p.names),
                "sizes": [list(s) for s in p.sizes],
                "mean_bytes": p.mean_bytes,
            }
            for size, p in sets.items()
        },
        "server_setups": setups,
        "score_difference": {
            label: float(np.max(np.abs(scores["service-full"] - found)))
            for label, found in scores.items()
        },
        **summarize(rounds),
        "rounds": rounds,
    }


def summarize(rounds: list[dict]) -> dict:
    """Medians over the rounds of every measured figure."""
    sizes = {}
    for size, first in rounds[0]["sizes"].items():
        entries = [r["sizes"][size] for r in rounds]
        sizes[size] = {
            "limit": median_of([e["limit"] for e in entries]),
            "limit_full": median_of([e["limit_full"] for e in entries]),
            "decode_ms": {
                policy: statistics.median(e["decode_ms"][policy] for e in entries)
                for policy in first["decode_ms"]
            },
            "servers": {
                label: {
                    load: median_of([e["servers"][label][load] for e in entries]) for load in loads
                }
                for label, loads in first["servers"].items()
            },
        }
    return {
        "raw_ort_batch_64": median_of([r["raw_ort_batch_64"] for r in rounds]),
        "sizes": sizes,
    }


def write_outputs(report: dict, out_dir: Path) -> None:
    """photos.json first, so that the measurements survive a failure in the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report["goals"] = photo_report.goals(report)
    (out_dir / "photos.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "photos.md").write_text(photo_report.markdown(report))
    photo_report.plot(report, out_dir / "photos.png")


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.from_json is not None:
        write_outputs(json.loads(args.from_json.read_text()), args.out_dir)
        return
    loadavg_before = os.getloadavg()
    processes_before = process_table()
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        models_dir = args.models_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="photo-models-"))
        )
        colors = sorted({model for model, _ in args.case_list})
        models = {c: photo_model(models_dir.resolve(), c, photo_set(1, c)) for c in colors}
        cases = {f"{m}:{j}": run_case(args, models, (m, j)) for m, j in args.case_list}
    report: dict = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([".venv/bin/python", "-m", "bench.serving", "--photos", *argv]),
        "settings": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k != "case_list"
        },
        "cpus": available_cpus(),
        "cases": cases,
        "machine": machine(),
        "loadavg_before": [round(v, 2) for v in loadavg_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "wall_seconds": time.monotonic() - began,
    }
    report["other_processes"] = other_processes(processes_before, report["wall_seconds"])
    write_outputs(report, args.out_dir)
    print(json.dumps({"goals": report["goals"], "wall_seconds": report["wall_seconds"]}))
