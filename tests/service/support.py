"""Test helpers for the service: tiny real ONNX models, images, and a uvicorn server in a thread.

The models follow the SPEC's model file: input `image` [N, C, H, W], outputs `score` [N]
(squared distance of a random linear embedding to a centre) and `embedding` [N, p], and a
valid `deepsvdd` metadata entry. `TinyModel.reference` computes the same score in numpy.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import uvicorn
from fastapi import FastAPI
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from modelfile.imaging import to_model_array
from modelfile.metadata import METADATA_KEY
from service.app import create_app
from service.settings import Settings

REP_DIM = 8
SPECS = {1: (28, 28, "L"), 3: (32, 32, "RGB")}


@dataclass(frozen=True)
class TinyModel:
    """A written model file and the numpy twin of its graph."""

    name: str
    version: int
    path: Path
    weights: np.ndarray  # (C*H*W, p)
    center: np.ndarray  # (p,)
    channels: int
    height: int
    width: int
    color: str
    thresholds: dict[str, float]

    def reference(self, pixels: np.ndarray) -> np.ndarray:
        """Scores uint8 `(n, H, W, C)` pixels as the graph does (in float64)."""
        x = pixels.astype(np.float64).transpose(0, 3, 1, 2).reshape(len(pixels), -1) / 255.0
        embedding = x @ self.weights.astype(np.float64)
        return np.sum((embedding - self.center) ** 2, axis=1)

    def reference_image(self, image: Image.Image) -> float:
        pixels = to_model_array(image, self.color, self.height, self.width)  # type: ignore[arg-type]
        return float(self.reference(pixels[None])[0])


def metadata(
    name: str, version: int, center: np.ndarray, thresholds: dict[str, float], channels: int
) -> dict[str, Any]:
    height, width, color = SPECS[channels]
    return {
        "format_version": 1,
        "name": name,
        "version": version,
        "created": "2026-01-01T00:00:00Z",
        "objective": "one-class",
        "nu": 0.1,
        "center": [float(v) for v in center],
        "radius": None,
        "thresholds": thresholds,
        "expected_anomaly_rate": {"q0.9": 0.1, "q0.95": 0.05, "q0.99": 0.01, "max": 0.0},
        "default_threshold": "q0.95",
        "input": {"channels": channels, "height": height, "width": width, "color": color},
        "dataset": {"name": "synthetic", "normal_class": 0, "n_train": 200},
        "metrics": {"auc": 0.9},
        "training": {"epochs": 0},
        "software": {"test": "1"},
    }


def graph_model(
    weights: np.ndarray, center: np.ndarray, input_shape: list[Any], meta: dict[str, Any] | None
) -> onnx.ModelProto:
    """image -> Flatten -> MatMul W -> embedding -> Sub c -> Mul self -> ReduceSum -> score."""
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["embedding"]),
        helper.make_node("Sub", ["embedding", "c"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["squared"]),
        helper.make_node("ReduceSum", ["squared", "axes"], ["score"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-deepsvdd",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape)],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", len(center)]),
        ],
        [
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(center, "c"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    if meta is not None:
        helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(model)
    return model


def build_model(
    models_dir: Path,
    name: str,
    version: int,
    *,
    channels: int = 1,
    seed: int = 0,
    meta_overrides: dict[str, Any] | None = None,
) -> TinyModel:
    """Writes `models_dir/name/version/model.onnx`; thresholds are quantiles of noise scores."""
    height, width, color = SPECS[channels]
    rng = np.random.default_rng(seed)
    dim = channels * height * width
    weights = rng.normal(0.0, 1.0 / np.sqrt(dim), (dim, REP_DIM)).astype(np.float32)
    center = rng.normal(0.0, 0.5, REP_DIM).astype(np.float32)
    probe = TinyModel(name, version, Path(), weights, center, channels, height, width, color, {})
    noise = rng.integers(0, 256, (200, height, width, channels), dtype=np.uint8)
    scores = probe.reference(noise)
    thresholds = {
        "q0.9": float(np.quantile(scores, 0.9)),
        "q0.95": float(np.quantile(scores, 0.95)),
        "q0.99": float(np.quantile(scores, 0.99)),
        "max": float(scores.max()),
    }
    meta = {**metadata(name, version, center, thresholds, channels), **(meta_overrides or {})}
    model = graph_model(weights, center, ["N", channels, height, width], meta)
    path = models_dir / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return TinyModel(
        name, version, path, weights, center, channels, height, width, color, thresholds
    )


def image_bytes(image: Image.Image, fmt: str = "PNG", **save_args: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save_args)
    return out.getvalue()


def noise_image(seed: int, size: tuple[int, int] = (28, 28), mode: str = "L") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = len(mode) if mode != "L" else 1
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    if channels == 1:
        return Image.fromarray(pixels[:, :, 0])
    return Image.fromarray(pixels, mode=mode)


def make_settings(models_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test server: CPU only, two ONNX Runtime threads, quiet logs."""
    values: dict[str, Any] = {
        "models_dir": models_dir,
        "providers": "CPUExecutionProvider",
        "intra_op_threads": 1,
        "log_level": "warning",
        **overrides,
    }
    return Settings(**values)


@dataclass
class LiveServer:
    """A uvicorn server on a free loopback port, running `app` in a thread."""

    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)


def wait_ready(url: str, deadline_s: float = 30.0) -> None:
    """Polls /health/ready until 200 (the models are loaded in the background)."""
    end = time.monotonic() + deadline_s
    with httpx.Client(base_url=url, timeout=5.0) as client:
        while time.monotonic() < end:
            if client.get("/health/ready").status_code == 200:
                return
            time.sleep(0.02)
    raise TimeoutError(f"{url} did not become ready within {deadline_s}s")


@contextlib.contextmanager
def running_server(settings: Settings, *, ready: bool = True) -> Iterator[LiveServer]:
    """Serves `create_app(settings)` with uvicorn in a thread; stops it gracefully on exit."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, log_level="warning", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        end = time.monotonic() + 30.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        live = LiveServer(f"http://127.0.0.1:{port}", app, server, thread)
        if ready:
            wait_ready(live.url)
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0.0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        found = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return 0.0


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` 8-bit grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [noise_image(40 + i, (28, 28), "L").convert("P") for i in range(3)]
    return image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


def multipage_tiff() -> bytes:
    pages = [noise_image(50 + i, (30, 30), "RGB") for i in range(3)]
    return image_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return image_bytes(noise_image(60, (40, 20), "RGB"), "JPEG", exif=exif.tobytes())


def odd_images() -> dict[str, tuple[bytes, str]]:
    """Valid images in every accepted format and the awkward modes: name -> (bytes, type)."""
    grey16 = Image.fromarray(np.random.default_rng(7).integers(0, 65535, (28, 28), dtype=np.uint16))
    palette = noise_image(8, (28, 28), "RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    floats = Image.fromarray(np.random.default_rng(9).normal(0, 3, (28, 28)).astype(np.float32))
    return {
        "grey16.png": (image_bytes(grey16, "PNG"), "image/png"),
        "palette.png": (image_bytes(palette, "PNG", transparency=0), "image/png"),
        "cmyk.jpg": (
            image_bytes(noise_image(10, (28, 28), "RGB").convert("CMYK"), "JPEG"),
            "image/jpeg",
        ),
        "la.png": (image_bytes(noise_image(11, (28, 28), "LA"), "PNG"), "image/png"),
        "rgba.webp": (image_bytes(noise_image(12, (28, 28), "RGBA"), "WEBP"), "image/webp"),
        "onebit.bmp": (
            image_bytes(noise_image(13, (28, 28), "L").convert("1"), "BMP"),
            "image/bmp",
        ),
        "float.tiff": (image_bytes(floats, "TIFF"), "image/tiff"),
        "rgb.ppm": (
            image_bytes(noise_image(14, (28, 28), "RGB"), "PPM"),
            "image/x-portable-pixmap",
        ),
        "animated.gif": (animated_gif(), "image/gif"),
        "pages.tiff": (multipage_tiff(), "image/tiff"),
        "rotated.jpg": (exif_rotated_jpeg(), "image/jpeg"),
        "big.png": (image_bytes(noise_image(15, (300, 200), "RGB"), "PNG"), "image/png"),
    }


def broken_images() -> dict[str, tuple[bytes, str, int]]:
    """Hostile uploads: name -> (bytes, content type, the status they must get)."""
    png = image_bytes(noise_image(20, (64, 64), "RGB"), "PNG")
    jpeg = image_bytes(noise_image(21, (64, 64), "RGB"), "JPEG")
    bad_crc = bytearray(png)
    bad_crc[30] ^= 0xFF
    rng = np.random.default_rng(22)
    return {
        "truncated.png": (png[: len(png) // 2], "image/png", 400),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "image/jpeg", 400),
        "header-only.png": (png[:40], "image/png", 400),
        "bad-crc.png": (bytes(bad_crc), "image/png", 400),
        "random.bin": (rng.bytes(5000), "application/octet-stream", 400),
        "random.png": (rng.bytes(5000), "image/png", 400),
        "html.png": (b"<html><body>not an image</body></html>", "image/png", 400),
        "svg.png": (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/png", 400),
        "zero-width.png": (png_declaring(0, 10), "image/png", 400),
        "bomb.png": (png_declaring(100_000, 100_000), "image/png", 413),
        "big-header.png": (png_declaring(8_000, 8_000), "image/png", 413),
        "text.txt": (b"hello", "text/plain", 415),
        "json.json": (b"{}", "application/json", 415),
        "vector.svg": (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml", 415),
        "empty.png": (b"", "image/png", 400),
    }


def service_env(models_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a `deepsvdd serve` subprocess: CPU, one thread, no inherited
    DEEPSVDD_* settings or metrics directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSVDD_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        DEEPSVDD_MODELS_DIR=str(models_dir),
        DEEPSVDD_PORT=str(port),
        DEEPSVDD_PROVIDERS="CPUExecutionProvider",
        DEEPSVDD_INTRA_OP_THREADS="1",
        DEEPSVDD_LOG_LEVEL="warning",
        **extra,
    )
    return env
