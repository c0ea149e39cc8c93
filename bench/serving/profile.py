"""Where the service's CPU goes, per image, under bench/serving's 28x28 loads:
`python -m bench.serving --profile`.

py-spy samples every worker of `python -m service` (all threads, idle ones left out) while wrk
sends the batched and the single-image load; each sampled stack is put in the group of the
innermost frame that belongs to a known part (the first rule of RULES its file and function
match), and samples / rate / images scored gives microseconds of CPU per image. Writes
profile.json and profile.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.serving.loads import (
    BATCH,
    FASHION_TEST,
    SINGLE_BODIES,
    Load,
    png_bytes,
    read_idx_images,
    run_wrk,
    write_bodies,
)
from bench.serving.run import DEFAULT_MODEL
from bench.serving.servers import (
    SERVING_DIR,
    model_repository,
    server,
    service_extra,
    service_server,
)

PY_SPY = Path(sys.executable).with_name("py-spy")
# (group, file fragment, function name or "" for any): the first that a frame matches, going
# from the innermost frame outwards, takes the sample.
RULES = (
    ("ONNX Runtime run", "onnxruntime/", ""),
    ("image decode (libspng / Pillow)", "service/decoding.py", ""),
    ("image decode (libspng / Pillow)", "PIL/", ""),
    ("uint8 to float tensor", "modelfile/pixels.py", ""),
    ("multipart split", "service/uploads.py", ""),
    ("metrics (Prometheus)", "service/metrics.py", ""),
    ("metrics (Prometheus)", "prometheus_client/", ""),
    ("answer (orjson, Response)", "service/routers/score.py", "_answer"),
    ("middlewares", "service/middleware.py", ""),
    ("decode pool hand-off", "service/decode_pool.py", ""),
    ("batcher (queue, concatenate, answer)", "service/batching.py", ""),
    ("score route, rest", "service/routers/score.py", ""),
    ("score route, rest", "service/", ""),
    ("FastAPI (routing, parameters, dependencies)", "fastapi/", ""),
    ("Starlette (request, response)", "starlette/", ""),
    ("uvicorn (HTTP parsing, sending)", "uvicorn/", ""),
    ("event loop and threads", "asyncio/", ""),
    ("event loop and threads", "concurrent/futures/", ""),
    ("event loop and threads", "threading.py", ""),
)
OTHER = "other"


def group_of(stack: str) -> str:
    """The group of one py-spy raw stack (frames `function (file:line)`, outermost first)."""
    for frame in reversed(stack.split(";")):
        function, _, where = frame.rpartition(" (")
        for group, fragment, name in RULES:
            if fragment in where and (not name or function == name):
                return group
    return OTHER


def read_raw(path: Path) -> Counter[str]:
    """Samples per group from py-spy's `--format raw` output."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            counts[group_of(stack)] += int(count)
    return counts


def profile_load(
    base: str, pid: int, bodies: list[Path], load: Load, args: argparse.Namespace, out: Path
) -> dict:
    """wrk on `load` with py-spy recording the server's processes for most of it."""
    url = f"{base}/score"
    run_wrk(url, bodies, load.connections, 2, args.warmup_seconds)
    spy = [
        *(str(PY_SPY), "record", "--pid", str(pid), "--subprocesses", "--nonblocking"),
        *("--rate", str(args.rate), "--duration", str(args.seconds)),
        *("--format", "raw", "--output", str(out)),
        *(["--gil"] if args.gil else []),
    ]
    with subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as spying:
        result = run_wrk(url, bodies, load.connections, 2, args.seconds + 2)
        spying.wait(timeout=60)
    images_per_s = (result["requests"] - result["errors_status"]) * load.images
    images_per_s /= result["duration_us"] / 1e6
    counts = read_raw(out)
    images = images_per_s * args.seconds
    return {
        "images_per_s": images_per_s,
        "samples": sum(counts.values()),
        "us_per_image": {group: 1e6 * n / args.rate / images for group, n in counts.most_common()},
    }


def markdown(report: dict) -> str:
    loads = report["loads"]
    groups = sorted(
        {g for r in loads.values() for g in r["us_per_image"]},
        key=lambda g: -sum(r["us_per_image"].get(g, 0.0) for r in loads.values()),
    )
    header = " | ".join(f"{name}: us/image | share" for name in loads)
    lines = [
        "| where the CPU goes | " + header + " |",
        "| --- |" + " ---: | ---: |" * len(loads),
    ]
    for group in groups:
        cells = []
        for r in loads.values():
            us = r["us_per_image"].get(group, 0.0)
            cells.append(f"{us:.1f} | {us / sum(r['us_per_image'].values()):.0%}")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    totals = " | ".join(f"**{sum(r['us_per_image'].values()):.1f}** | " for r in loads.values())
    lines.append(f"| all sampled CPU | {totals}")
    speeds = ", ".join(f"{n} {r['images_per_s']:,.0f} images/s" for n, r in loads.items())
    return "\n".join(
        [
            f"Profiled {report['date']}: `{report['command']}`; py-spy at {report['rate']} Hz "
            f"for {report['seconds']} s a load ({speeds} while sampled).",
            "",
            *lines,
            "",
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving --profile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--seconds", type=int, default=10, help="sampled seconds a load")
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples a second")
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--single-connections", type=int, default=16)
    parser.add_argument("--service-dir", type=Path, default=SERVING_DIR.parents[1])
    parser.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--gil", action="store_true", help="sample only the GIL's holder")
    parser.add_argument("--raw-dir", type=Path, default=None, help="keep py-spy's raw stacks here")
    parser.add_argument("--out-dir", type=Path, default=SERVING_DIR)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    pixels = read_idx_images(FASHION_TEST, max(BATCH, SINGLE_BODIES))
    pngs = [png_bytes(p) for p in pixels]
    loads = [
        Load("batched", BATCH, args.batch_connections),
        Load("single", 1, args.single_connections),
    ]
    found = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serve-profile-")))
        raw_dir = args.raw_dir or tmp
        raw_dir.mkdir(parents=True, exist_ok=True)
        models = model_repository(args.model.resolve(), tmp / "models")
        target = service_server("service", models, service_extra(args), args)
        process = stack.enter_context(server(target, tmp / "service.log"))
        for load in loads:
            bodies = write_bodies(tmp, pngs, load.images, 4 if load.images > 1 else SINGLE_BODIES)
            found[load.name] = profile_load(
                target.base, process.pid, bodies, load, args, raw_dir / f"{load.name}.txt"
            )
            print(f"{load.name}: {found[load.name]['images_per_s']:,.0f} images/s", file=sys.stderr)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([".venv/bin/python", "-m", "bench.serving", "--profile", *argv]),
        "rate": args.rate,
        "gil_only": args.gil,
        "seconds": args.seconds,
        "loads": found,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "profile.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "profile.md").write_text(markdown(report))
    print(markdown(report))
