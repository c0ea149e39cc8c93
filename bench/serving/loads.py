"""What bench/serving sends and measures: Fashion-MNIST test images as PNGs (or photographs as
JPEGs) in multipart bodies for wrk, wrk itself, raw ONNX Runtime, and the service's histograms
read off /metrics."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from service.settings import CPU_PROVIDER

FASHION_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
WRK = "/usr/bin/wrk"
LUA = Path(__file__).resolve().parent / "wrk" / "post_bodies.lua"
BOUNDARY = "deepsvdd-bench-3f9a1c"
IDX_IMAGES_MAGIC = 2051
SINGLE_BODIES = 64  # single-image requests cycle through this many different images
BATCH = 64  # images per batched upload, and the raw ORT batch they are compared with


@dataclass(frozen=True)
class Load:
    """One wrk load: how many images each request carries, over how many connections."""

    name: str
    images: int
    connections: int


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


@dataclass(frozen=True)
class Kind:
    """What the uploads are: the stem of their file names, their extension and media type."""

    stem: str
    extension: str
    media_type: str


FASHION_PNG = Kind("fmnist", "png", "image/png")


def multipart_body(images: list[bytes], first_index: int, kind: Kind = FASHION_PNG) -> bytes:
    parts = [
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{kind.stem}-{first_index + i}.{kind.extension}"\r\n'
            f"Content-Type: {kind.media_type}\r\n\r\n"
        ).encode()
        + image
        + b"\r\n"
        for i, image in enumerate(images)
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def write_bodies(
    directory: Path, images: list[bytes], per_request: int, count: int, kind: Kind = FASHION_PNG
) -> list[Path]:
    """`count` request bodies of `per_request` consecutive images each, as files for wrk."""
    paths = []
    for i in range(count):
        start = (i * per_request) % len(images)
        chunk = [images[(start + j) % len(images)] for j in range(per_request)]
        path = directory / f"body-{kind.stem}-{per_request}-{i}.bin"
        path.write_bytes(multipart_body(chunk, start, kind))
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
