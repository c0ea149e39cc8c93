"""Serving speed: raw ONNX Runtime, this service, a plain FastAPI endpoint and BentoML under wrk.

Scores 28x28 Fashion-MNIST test images (pre-encoded PNGs) with one trained model: raw
ONNX Runtime at batch 1 and 64, then `python -m service`, bench/plain_app.py and BentoML's
adaptive batching (bench/peer_bento.py, from its own environment bench/.peer-venv, made on
first use), each under wrk with 64-image multipart uploads and with single-image uploads.
Writes serving.json, serving.md and serving.png (bench/serving_report.py). Run from the
repository root: `.venv/bin/python bench/serve_bench.py --help`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import datetime as dt
import gzip
import io
import json
import os
import platform
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image

from bench import peer, serving_report
from service.cpus import affinity_cpus, available_cpus, quota_cpus
from service.settings import CPU_PROVIDER, MAX_AUTO_WORKERS
from tests.support.processes import stop_process
from tests.support.servers import free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_MODEL = REPO / "models/fashion-mnist-trouser/1/model.onnx"
FASHION_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
WRK = "/usr/bin/wrk"
LUA = BENCH_DIR / "wrk/post_bodies.lua"
BOUNDARY = "deepsvdd-bench-3f9a1c"
IDX_IMAGES_MAGIC = 2051
SINGLE_BODIES = 64  # single-image requests cycle through this many different images
BATCH = 64  # images per batched upload, and the raw ORT batch they are compared with
OTHERS_SHOWN = 5  # the busiest other commands named under "what else ran"


@dataclass(frozen=True)
class Load:
    """One wrk load: how many images each request carries, over how many connections."""

    name: str
    images: int
    connections: int


@dataclass(frozen=True)
class Server:
    """A server process to start: its command, environment, base URL and readiness probe."""

    label: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    base: str
    probe: str


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a model.onnx file")
    parser.add_argument("--raw-seconds", type=float, default=3.0, help="per raw ORT batch size")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="wrk before measuring")
    parser.add_argument("--duration", type=int, default=20, help="seconds of each measured load")
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--single-connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="repeats; medians are reported")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR)
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


def read_idx_images(path: Path, count: int) -> np.ndarray:
    """The first `count` images of a gzipped IDX file: uint8 `(count, rows, cols)`."""
    with gzip.open(path, "rb") as handle:
        magic, total, rows, cols = np.frombuffer(handle.read(16), dtype=">u4")
        if magic != IDX_IMAGES_MAGIC:
            raise ValueError(f"{path} is not an IDX image file (magic {magic})")
        count = min(count, int(total))
        pixels = np.frombuffer(handle.read(count * int(rows) * int(cols)), dtype=np.uint8)
    return pixels.reshape(count, int(rows), int(cols))


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def multipart_body(pngs: list[bytes], first_index: int) -> bytes:
    parts = [
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="fmnist-{first_index + i}.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + png
        + b"\r\n"
        for i, png in enumerate(pngs)
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def write_bodies(directory: Path, pngs: list[bytes], per_request: int, count: int) -> list[Path]:
    """`count` request bodies of `per_request` consecutive images each, as files for wrk."""
    paths = []
    for i in range(count):
        start = (i * per_request) % len(pngs)
        chunk = [pngs[(start + j) % len(pngs)] for j in range(per_request)]
        path = directory / f"body-{per_request}-{i}.bin"
        path.write_bytes(multipart_body(chunk, start))
        paths.append(path)
    return paths


def raw_ort(model: Path, threads: int, images: np.ndarray, seconds: float) -> dict[str, float]:
    """images/s of `session.run` on pre-made float32 batches, after a warm-up."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=[CPU_PROVIDER])
    feed = {"image": images}
    warm_end = time.perf_counter() + min(1.0, seconds / 3)
    while time.perf_counter() < warm_end:
        session.run(["score"], feed)
    runs, began, cpu_began = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - began < seconds:
        session.run(["score"], feed)
        runs += 1
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    return {
        "batch": images.shape[0],
        "runs": runs,
        "seconds": elapsed,
        "images_per_s": runs * images.shape[0] / elapsed,
        "run_ms": 1000 * elapsed / runs,
        "cpu_us_per_image": 1e6 * cpu / (runs * images.shape[0]),
    }


@contextlib.contextmanager
def server(target: Server, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Starts `target`, waits until its probe answers 200, and stops it with SIGTERM."""
    probe = target.base + target.probe
    with open(log, "wb") as out:
        process = subprocess.Popen(
            target.command,
            cwd=target.cwd,
            env={**os.environ, **target.env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            end = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{target.label} exited early: {log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(probe, timeout=2).status_code == 200:
                        break
                if time.monotonic() > end:
                    raise RuntimeError(f"{probe} did not answer 200 within 60 s")
                time.sleep(0.1)
            yield process
        finally:
            stop_process(process)


@dataclass(frozen=True)
class Proc:
    """One process from /proc: its parent and the CPU time it has used so far."""

    ppid: int
    cpu_s: float


def process_table() -> dict[int, Proc]:
    """Every process now running (Linux /proc): user + system CPU seconds and parent."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it has just exited
            continue
        table[int(entry.name)] = Proc(int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def descendants(table: dict[int, Proc], root: int) -> set[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid, proc in table.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by `pid` and its descendants (a server's workers)."""
    table = process_table()
    return sum(table[p].cpu_s for p in descendants(table, pid) if p in table)


def command_name(pid: int) -> str:
    """A short name: the program, and for an interpreter its script or module."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "?"
    name = Path(words[0]).name
    if name.startswith("python") and len(words) > 1:
        name += " " + (words[2] if words[1] == "-m" and len(words) > 2 else Path(words[1]).name)
    return name


def other_processes(before: dict[int, Proc], wall_s: float) -> dict:
    """CPU time that processes outside this benchmark's tree used since `before`, by name."""
    after = process_table()
    ours = descendants(after, os.getpid())
    by_name: dict[str, float] = {}
    for pid, proc in after.items():
        if pid in ours:
            continue
        used = proc.cpu_s - (before[pid].cpu_s if pid in before else 0.0)
        if used > 0:
            name = command_name(pid)
            by_name[name] = by_name.get(name, 0.0) + used
    top = sorted(by_name.items(), key=lambda item: -item[1])[:OTHERS_SHOWN]
    return {"cpu_s": sum(by_name.values()), "wall_s": wall_s, "top": top}


def run_wrk(url: str, bodies: list[Path], connections: int, threads: int, seconds: float) -> dict:
    command = [
        WRK,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        url,
        "--",
        f"multipart/form-data; boundary={BOUNDARY}",
        *map(str, bodies),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            result: dict = json.loads(line.removeprefix("WRK_JSON "))
            return result
    raise RuntimeError(f"wrk printed no WRK_JSON line:\n{done.stdout}\n{done.stderr}")


def histogram_totals(metrics_text: str, name: str) -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram, summed over its label sets."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def service_workers(extra: dict[str, str]) -> int:
    """The service's worker count: DEEPSVDD_WORKERS as given, else its auto default."""
    asked = extra.get("DEEPSVDD_WORKERS", "auto").strip().lower()
    if asked.isdigit() and int(asked) > 0:
        return int(asked)
    return min(available_cpus(), MAX_AUTO_WORKERS)


def servers_for(
    model: Path, tmp: Path, args: argparse.Namespace
) -> tuple[list[Server], dict[str, str]]:
    """This service on a repository holding only `model`, the plain endpoint and the peer;
    and a line on how each was set up."""
    bad = [item for item in args.service_env if "=" not in item]
    if bad:
        sys.exit(f"--service-env {bad[0]!r} is not KEY=VALUE")
    extra = dict(item.split("=", 1) for item in args.service_env)
    models_dir = tmp / "models"
    name, version = model.parent.parent.name, model.parent.name
    (models_dir / name / version).mkdir(parents=True)
    (models_dir / name / version / "model.onnx").symlink_to(model)
    workers = service_workers(extra)
    threads = int(extra.get("DEEPSVDD_INTRA_OP_THREADS", "0")) or max(
        1, available_cpus() // workers
    )
    service_port, plain_port, peer_port = free_port(), free_port(), free_port()
    servers = [
        Server(
            "service",
            [sys.executable, "-m", "service"],
            args.service_dir.resolve(),
            {
                "DEEPSVDD_MODELS_DIR": str(models_dir),
                "DEEPSVDD_PROVIDERS": CPU_PROVIDER,
                "DEEPSVDD_PORT": str(service_port),
                **extra,
            },
            f"http://127.0.0.1:{service_port}",
            "/health/ready",
        ),
        Server(
            "plain",
            [
                *(sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "plain_app:app"),
                *("--host", "127.0.0.1", "--port", str(plain_port), "--workers", "1"),
            ],
            REPO,
            {"PLAIN_APP_MODEL": str(model)},
            f"http://127.0.0.1:{plain_port}",
            "/openapi.json",
        ),
    ]
    setups = {
        "service": f"{workers} worker(s) of {threads} ONNX Runtime thread(s)",
        "plain": "`uvicorn --app-dir bench plain_app:app --workers 1`",
    }
    if args.peer == "bentoml":
        python = peer.peer_python(args.peer_venv)
        servers.append(
            Server(
                "peer",
                peer.bentoml_command(python, peer_port),
                BENCH_DIR,
                peer.bentoml_env(model, workers, threads, tmp / "bentoml-home"),
                f"http://127.0.0.1:{peer_port}",
                "/readyz",
            )
        )
        setups["peer"] = (
            f"`bentoml serve peer_bento:Scorer` ({peer.BENTOML}), {workers} worker(s) of "
            f"{threads} ONNX Runtime thread(s), adaptive batching up to {BATCH} images and "
            "1000 ms (`PEER_MAX_LATENCY_MS`)"
        )
    return servers, setups


def measure_load(
    target: Server, pid: int, load: Load, bodies: list[Path], args: argparse.Namespace, warm: bool
) -> dict:
    """One measured wrk run (after a warm-up run when `warm`), with the server's CPU time."""
    url = f"{target.base}/score"
    service = target.label == "service"
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
    cpu, flags = "unknown", []
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu == "unknown":
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value.split()
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
        "cpu": cpu,
        "flags": sorted(f for f in flags if f in serving_report.FLAGS),
        "cpus_available": available_cpus(),
        "cpus_affinity": affinity_cpus(),
        "cpus_online": os.cpu_count(),
        "cpu_quota": quota_cpus(),
        "python": platform.python_version(),
        "platform": platform.platform(),
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
        "command": shlex.join([".venv/bin/python", "bench/serve_bench.py", *sys.argv[1:]]),
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


if __name__ == "__main__":
    main()
