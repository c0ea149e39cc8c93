"""The cost of anomaly maps: images/s with and without `explain`, raw and through the service.

Raw: one ONNX Runtime session scores Fashion-MNIST test images in batches of 64, then the
same images with their occlusion maps (`service.explain`: 1 + 169 inferences an image, run
in chunks of 64 as the batcher runs them, plus the map and PNG work). Service: `python -m
service` in its own process, one client sending 4-image uploads with and without
`explain=true`. Writes explain.json and explain.md. Run from the repository root:
`.venv/bin/python -m bench.explain [--seconds S] [--providers P]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

from bench.harness.machine import cpu_model
from bench.harness.processes import ROOT, free_port, stop_process
from bench.serving.loads import FASHION_TEST, png_bytes, read_idx_images
from modelfile import INPUT_NAME, SCORE_OUTPUT
from service.explain import COST, explain_answers, explain_batch

OUT = Path(__file__).resolve().parent
MODEL = "fashion-mnist-sneaker"
CHUNK = 64  # DEEPSVDD_MAX_BATCH's default: the batcher's run size
PER_REQUEST = 4  # DEEPSVDD_MAX_EXPLAIN_IMAGES's default


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    p.add_argument("--providers", default="CPUExecutionProvider")
    p.add_argument("--out", type=Path, default=OUT)
    return p.parse_args()


def timed(step: object, seconds: float, images_per_step: int) -> dict[str, float]:
    """Runs `step()` for about `seconds`; images/s and ms per step."""
    assert callable(step)
    step()  # warm-up
    began, steps = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - began
    return {
        "images_per_s": steps * images_per_step / elapsed,
        "ms_per_step": 1000 * elapsed / steps,
    }


def raw(providers: list[str], pixels: np.ndarray, seconds: float) -> dict[str, dict[str, float]]:
    session = ort.InferenceSession(
        str(ROOT / "models" / MODEL / "1" / "model.onnx"), providers=providers
    )
    batch = pixels[:CHUNK, None].astype(np.float32) / 255.0
    few = batch[:PER_REQUEST]

    def plain() -> None:
        session.run([SCORE_OUTPUT], {INPUT_NAME: batch})

    def maps() -> None:
        images, grid = explain_batch(few)
        scores = np.concatenate(
            [
                session.run([SCORE_OUTPUT], {INPUT_NAME: images[i : i + CHUNK]})[0]
                for i in range(0, len(images), CHUNK)
            ]
        ).astype(np.float64)
        explain_answers(few, scores, grid)

    fake_scores = np.zeros(PER_REQUEST * COST)

    def map_work() -> None:
        _, grid = explain_batch(few)
        explain_answers(few, fake_scores, grid)

    return {
        "plain, batch 64": timed(plain, seconds, CHUNK),
        f"with maps, {PER_REQUEST} images": timed(maps, seconds, PER_REQUEST),
        "maps without the inferences (occluded copies, maps, PNGs)": timed(
            map_work, seconds, PER_REQUEST
        ),
    }


def served(providers: str, pixels: np.ndarray, seconds: float) -> dict[str, dict[str, float]]:
    port = free_port()
    env = {
        **os.environ,
        "DEEPSVDD_MODELS_DIR": str(ROOT / "models"),
        "DEEPSVDD_PROVIDERS": providers,
        "DEEPSVDD_PORT": str(port),
        "DEEPSVDD_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen([sys.executable, "-m", "service"], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    pngs = [png_bytes(image) for image in pixels[:PER_REQUEST]]
    files = [("files", (f"{i}.png", png, "image/png")) for i, png in enumerate(pngs)]
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if client.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)

            def post(explain: bool) -> None:
                params = {"model": MODEL, **({"explain": "true"} if explain else {})}
                answer = client.post("/score", params=params, files=files)
                answer.raise_for_status()

            return {
                f"plain, {PER_REQUEST} images a request": timed(
                    lambda: post(False), seconds, PER_REQUEST
                ),
                f"with maps, {PER_REQUEST} images a request": timed(
                    lambda: post(True), seconds, PER_REQUEST
                ),
            }
    finally:
        stop_process(proc)


def write(results: dict[str, object], out: Path) -> None:
    (out / "explain.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Anomaly maps: what they cost",
        "",
        f"Measured {results['date']} on {results['machine']} with {results['providers']}, "
        f"model {MODEL}, 28x28 Fashion-MNIST test images; each figure is the mean over "
        f"{results['seconds']} s. The machine was shared with other jobs while this ran: "
        "the figures are noisy and lower bounds.",
        "",
        "| path | measurement | images/s | ms per step |",
        "| --- | --- | ---: | ---: |",
    ]
    for where in ("raw", "service"):
        table = results[where]
        assert isinstance(table, dict)
        for name, row in table.items():
            lines.append(
                f"| {where} | {name} | {row['images_per_s']:.1f} | {row['ms_per_step']:.2f} |"
            )
    lines += ["", f"Command: `{command(results)}`", ""]
    (out / "explain.md").write_text("\n".join(lines))


def command(results: dict[str, object]) -> str:
    """The command that reproduces these results (their settings are all it takes)."""
    flags = ["--seconds", f"{results['seconds']:g}", "--providers", str(results["providers"])]
    return shlex.join([".venv/bin/python", "-m", "bench.explain", *flags])


def main() -> None:
    args = parse_args()
    pixels = read_idx_images(FASHION_TEST, CHUNK)
    providers = args.providers.split(",")
    results: dict[str, object] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs",
        "providers": args.providers,
        "seconds": args.seconds,
        "inferences_per_map": COST,
        "raw": raw(providers, pixels, args.seconds),
        "service": served(args.providers, pixels, args.seconds),
    }
    write(results, args.out)
    print(json.dumps(results, indent=2))
