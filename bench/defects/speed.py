"""Images/s of a defects model: raw ONNX Runtime (one thread) with and without maps, and
`POST /score` of a real service process with and without `explain=true`."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.defects.score import (
    CHUNK,
    graph_maps,
    has_map,
    metadata,
    occlusion_maps,
    run_scores,
    session,
)
from bench.harness.servers import served
from service.repository import images_per_run

PER_REQUEST = 4  # images a request: DEEPSVDD_MAX_EXPLAIN_IMAGES's default


def timed(step: Callable[[], object], seconds: float, images_per_step: int) -> float:
    """Images/s of `step()` run for about `seconds`, after one warm-up call."""
    step()
    began, steps = time.perf_counter(), 0
    while time.perf_counter() - began < seconds or steps == 0:
        step()
        steps += 1
    return steps * images_per_step / (time.perf_counter() - began)


def raw_speed(model: Path, batch: np.ndarray, seconds: float) -> dict[str, float]:
    """Scores only (up to CHUNK images, in the runs the service would make: fewer images a
    run for a large patch model), and scores with maps (PER_REQUEST images a call: the
    graph's own map, or occlusion's 1 + 169 inferences an image)."""
    sess = session(model)
    plain, few = batch[:CHUNK], batch[:PER_REQUEST]
    run = images_per_run(metadata(sess), CHUNK)
    mapper = graph_maps if has_map(sess) else occlusion_maps
    return {
        "scores": timed(lambda: run_scores(sess, plain, run), seconds, len(plain)),
        "with_maps": timed(lambda: mapper(sess, few), seconds, len(few)),
    }


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()


def served_speed(
    models_dir: Path, name: str, images: list[np.ndarray], seconds: float, log_dir: Path
) -> dict[str, float]:
    """/score images/s, PER_REQUEST PNGs a request, one client, with and without maps."""
    files = [("files", (f"{i}.png", _png(p), "image/png")) for i, p in enumerate(images)]
    with (
        served(models_dir, log_dir) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):

        def post(explain: bool) -> None:
            params = {"model": name, **({"explain": "true"} if explain else {})}
            client.post("/score", params=params, files=files[:PER_REQUEST]).raise_for_status()

        return {
            "score": timed(lambda: post(False), seconds, PER_REQUEST),
            "score_explain": timed(lambda: post(True), seconds, PER_REQUEST),
        }
