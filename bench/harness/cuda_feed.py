"""Photographs decoded on CPU threads feeding batched ONNX Runtime inference (CUDA on a GPU):
images/s of decoding alone, of inference alone and of the two together. Torch-free.

`python -m bench.harness.cuda_feed MODEL.onnx PHOTO... --providers CUDAExecutionProvider,...`
exits non-zero when the first provider asked for is not the one running the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelfile.metadata import METADATA_KEY, ModelMetadata
from modelfile.pixels import to_input
from service.decoding import best_pixels

MAX_PIXELS = 50_000_000


def rate(work: Callable[[], int], seconds: float) -> float:
    """Images per second of repeated `work()` calls (each returns its image count) for about
    `seconds`, after one untimed call."""
    work()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += work()
    return done / (time.perf_counter() - start)


def feed(args: argparse.Namespace) -> dict[str, object]:
    wanted = args.providers.split(",")
    session = ort.InferenceSession(str(args.model), providers=wanted)
    active = session.get_providers()[0]
    if active != wanted[0]:
        sys.exit(f"cuda_feed: {args.model} runs on {active}, not on {wanted[0]} as asked")
    raw = session.get_modelmeta().custom_metadata_map[METADATA_KEY]
    meta = ModelMetadata.from_json(raw)
    spec, policy = meta.input, meta.decode  # decoded as the service decodes for this model
    photos = [p.read_bytes() for p in args.photos]
    batch = [photos[i % len(photos)] for i in range(args.batch)]
    pool = ThreadPoolExecutor(args.workers)

    def decode() -> np.ndarray:
        pixels = pool.map(lambda data: best_pixels(data, "photo", spec, MAX_PIXELS, policy), batch)
        return to_input(list(pixels))

    x = decode()

    def infer(images: np.ndarray) -> int:
        session.run(None, {"image": images})
        return len(images)

    result = {
        "model": str(args.model),
        "provider": active,
        "decode": policy,
        "batch": args.batch,
        "decode_workers": args.workers,
        "decode_images_per_s": rate(lambda: len(decode()), args.seconds),
        "infer_images_per_s": rate(lambda: infer(x), args.seconds),
        "both_images_per_s": rate(lambda: infer(decode()), args.seconds),
    }
    pool.shutdown()
    return result


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.harness.cuda_feed", description=__doc__)
    p.add_argument("model", type=Path)
    p.add_argument("photos", type=Path, nargs="+", help="JPEG or PNG files, used in turn")
    p.add_argument("--providers", default="CUDAExecutionProvider,CPUExecutionProvider")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=8, help="decoding threads")
    p.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    p.add_argument("--out", type=Path, default=None, help="write the result here as JSON")
    args = p.parse_args(argv)
    result = feed(args)
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
