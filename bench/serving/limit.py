"""The limit a server of photographs can reach on this machine: decoding by the model's own
policy on every core, and ONNX Runtime at batch 64 on what they decode, with no HTTP at all.

A pool of one process per CPU decodes chunks of photographs (the service's Pillow decoder,
`service.decoding.decode_pixels`, under the model's decode policy) while the parent stacks
them and runs the model on each 64; images/s is what leaves the model (the last run of a
measurement takes what is ready). Everything the service must do on top (HTTP, multipart,
batching across requests) only lowers it.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelfile.layout import open_model
from modelfile.metadata import DecodePolicy, InputSpec
from modelfile.pixels import to_input
from service.decoding import decode_pixels
from service.settings import CPU_PROVIDER

CHUNK = 2  # photographs a pool task decodes (few: the pool ends after its last tasks)
BATCH = 64  # images a model run scores
MAX_PIXELS = 40_000_000  # the service's default limit
_photos: list[bytes] = []  # each pool process's copy, set once by _keep


def _keep(photos: list[bytes]) -> None:
    _photos[:] = photos


def _decode_chunk(first: int, spec: InputSpec, policy: DecodePolicy) -> np.ndarray:
    """In a pool process: uint8 `(CHUNK, H, W, C)` of the photographs from index `first` on,
    decoded under the model's `policy`."""
    indices = [(first + i) % len(_photos) for i in range(CHUNK)]
    return np.stack(
        [decode_pixels(_photos[i], f"photo {i}", spec, MAX_PIXELS, policy) for i in indices]
    )


def decode_and_score(
    model: Path, photos: list[bytes], processes: int, seconds: float, warmup_s: float = 1.0
) -> dict[str, float]:
    """images/s of the whole pipeline over `seconds` after `warmup_s`, with `processes`
    decoding processes and ONNX Runtime (one thread) in this one."""
    _, meta = open_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=[CPU_PROVIDER])
    scored = 0
    with ProcessPoolExecutor(processes, initializer=_keep, initargs=(photos,)) as pool:
        next_first = 0

        def submit() -> Future[np.ndarray]:
            nonlocal next_first
            future = pool.submit(_decode_chunk, next_first, meta.input, meta.decode)
            next_first = (next_first + CHUNK) % len(photos)
            return future

        pending = deque(submit() for _ in range(2 * processes))
        ready: list[np.ndarray] = []
        began = time.perf_counter()
        counting_from: float | None = None
        while True:
            ready.append(pending.popleft().result())
            pending.append(submit())
            now = time.perf_counter()
            if counting_from is None and now - began >= warmup_s:
                counting_from, ready = now, []  # what decoded in the warm-up is not counted
                continue
            over = counting_from is not None and now - counting_from >= seconds
            if len(ready) * CHUNK >= BATCH or over:
                session.run(["score"], {"image": to_input(np.concatenate(ready))})
                if counting_from is not None:
                    scored += len(ready) * CHUNK
                ready = []
            if over:
                break
        assert counting_from is not None
        elapsed = time.perf_counter() - counting_from
        for future in pending:
            future.cancel()
    return {
        "images_per_s": scored / elapsed,
        "seconds": elapsed,
        "images": scored,
        "processes": processes,
    }


def decode_ms(model: Path, photos: list[bytes], count: int) -> float:
    """Mean milliseconds to decode one photograph for `model` on one core (this process)."""
    _, meta = open_model(model)
    began = time.perf_counter()
    for i in range(count):
        decode_pixels(photos[i % len(photos)], "photo", meta.input, MAX_PIXELS, meta.decode)
    return 1000 * (time.perf_counter() - began) / count
