"""Offline scoring on Ray Data against the local engine: `deepsvdd score` over N generated
28 x 28 grey PNGs, in one process (`--engine local`) and on a local Ray instance with 1 and
2 actors (`--engine ray`), timed end to end, with the peak resident memory of the driver and
of the Ray workers sampled from /proc. Writes ray_scoring.json and ray_scoring.md beside this
script. Run from the repository root: `.venv/bin/python -m bench.ray_scoring --help`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.harness.images import png
from bench.harness.machine import cpu_model, platform_name, python_version
from bench.harness.processes import ROOT
from bench.harness.progress import now
from bench.harness.results import write_json, write_text
from bench.ray_scoring.memory import Sampler
from bench.ray_scoring.report import Run, report

OUT = Path(__file__).resolve().parent
MODEL = "fashion-mnist-sneaker"
# Ray Data's own log line at the end of a dataset's run: its execution, without Ray's start-up.
EXECUTED = re.compile(r"execution finished in ([0-9.]+) seconds")


def counts(text: str) -> list[int]:
    return sorted(int(part) for part in text.split(",") if part.strip())


def write_shards(root: Path, total: int, shard: int) -> list[Path]:
    """`total` noise PNGs in folders of `shard` files each (distinct images: seed = index)."""
    folders = []
    for start in range(0, total, shard):
        folder = root / f"part-{start // shard:04d}"
        folder.mkdir()
        for i in range(start, min(start + shard, total)):
            (folder / f"{i:07d}.png").write_bytes(png(i))
        folders.append(folder)
    return folders


def command(engine: str, actors: int, folders: list[Path], out: Path, batch: int) -> list[str]:
    argv = [sys.executable, "-m", "cli", "score", MODEL, *map(str, folders)]
    argv += ["--models-dir", str(ROOT / "models"), "--batch-size", str(batch)]
    if engine == "ray":
        return [*argv, "--engine", "ray", "--actors", str(actors), "--output", str(out)]
    return [*argv, "--output", str(out)]


def measure(engine: str, actors: int, folders: list[Path], images: int, work: Path) -> Run:
    """One `deepsvdd score` run, timed, its process tree's memory sampled."""
    suffix = "parquet" if engine == "ray" else "csv"
    out = work / f"{engine}-{actors}-{images}.{suffix}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEEPSVDD_PROVIDERS": "CPUExecutionProvider"}
    log = (work / f"{out.stem}.log").open("wb")
    began = time.perf_counter()
    process = subprocess.Popen(
        command(engine, actors, folders, out, 256), cwd=ROOT, env=env, stdout=log, stderr=log
    )
    sampler = Sampler(process.pid)
    code = process.wait()
    seconds = time.perf_counter() - began
    peaks = sampler.stop()
    log.close()
    text = Path(log.name).read_text(errors="replace")
    if code != 0:
        raise SystemExit(f"{engine} run failed ({code}); the end of its log:\n{text[-3000:]}")
    executed = EXECUTED.findall(text)
    pipeline_s = float(executed[-1]) if executed else None
    return Run(
        engine=engine,
        actors=actors if engine == "ray" else 0,
        images=images,
        seconds=round(seconds, 2),
        images_per_s=round(images / seconds, 1),
        pipeline_s=pipeline_s,
        pipeline_images_per_s=round(images / pipeline_s, 1) if pipeline_s else None,
        driver_peak_mib=round(peaks.driver / 2**20, 1),
        workers_peak_mib=round(peaks.workers / 2**20, 1),
        total_peak_mib=round(peaks.total / 2**20, 1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ray_scoring", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--counts", type=counts, default=[10_000, 30_000, 100_000])
    parser.add_argument("--shard", type=int, default=10_000, help="images per folder")
    parser.add_argument("--actors", type=counts, default=[1, 2], help="Ray actor counts")
    parser.add_argument("--out", type=Path, default=OUT, help="where the results go")
    args = parser.parse_args(argv)
    setup: dict[str, object] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": MODEL,
        "command": "python -m bench.ray_scoring "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "python": python_version(),
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "platform": platform_name(),
        },
    }
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="ray-scoring-") as tmp:
        work = Path(tmp)
        (work / "images").mkdir()
        folders = write_shards(work / "images", max(args.counts), args.shard)
        print(f"{now()} wrote {max(args.counts)} PNGs", flush=True)
        for images in args.counts:
            used = folders[: -(-images // args.shard)]
            for engine, actors in [("local", 1), *(("ray", n) for n in args.actors)]:
                runs.append(measure(engine, actors, used, images, work))
                print(f"{now()} {runs[-1]}", flush=True)
    payload = {"setup": setup, "runs": [asdict(r) for r in runs]}
    write_json(args.out / "ray_scoring.json", payload, indent=2)
    write_text(args.out / "ray_scoring.md", report(runs, setup))
    print(report(runs, setup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
