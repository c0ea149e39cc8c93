"""Where a request's images are decoded: small ready-made PNGs on the event loop, the rest in
a thread pool, in one job per CPU; `service.decoding` holds the decoders themselves."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from modelfile.metadata import InputSpec
from modelfile.pixels import to_input
from service.cpus import available_cpus
from service.decoding import decode_pixels, fast_png
from service.errors import ApiError
from service.uploads import Upload

# Models whose input has at most this many samples get their ready-made PNGs decoded on the
# event loop: libspng decodes an image that small faster than a thread hand-off costs
# (bench/serving.md has the figures).
INLINE_SAMPLES = 64 * 64 * 3


def _decode_all(
    uploads: list[Upload], spec: InputSpec, max_pixels: int, try_fast: bool
) -> list[np.ndarray]:
    """In a pool thread: uint8 `(H, W, C)` pixels of each upload; the first bad one raises.
    `try_fast`: try `fast_png` first (False when the event loop has tried it already)."""
    return [
        decode_pixels(u.data, u.what, spec, max_pixels)
        if not try_fast or (fast := fast_png(u.data, spec, max_pixels)) is None
        else fast
        for u in uploads
    ]


class DecodePool:
    """The app's decoding threads and the rule that splits a request's images among them."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._jobs = max(2, available_cpus())
        self._pool = ThreadPoolExecutor(self._jobs, thread_name_prefix="decode")

    async def decode(self, uploads: list[Upload], spec: InputSpec) -> np.ndarray:
        """Decodes the uploads; float32 `(n, C, H, W)` pixel/255, in upload order.

        PNGs already in a small model's size and mode decode here on the event loop
        (`service.decoding.fast_png`); the others go to the thread pool in one job per
        CPU, not one per image: a small image decodes in less time than a future and a
        loop wake-up per image cost.
        """
        max_pixels = self.max_pixels
        inline = spec.channels * spec.height * spec.width <= INLINE_SAMPLES
        pixels: list[np.ndarray | None]
        if inline:
            pixels = [fast_png(u.data, spec, max_pixels) for u in uploads]
        else:
            pixels = [None] * len(uploads)
        rest = [i for i, p in enumerate(pixels) if p is None]
        if rest:
            loop = asyncio.get_running_loop()
            step = -(-len(rest) // self._jobs)
            chunks = [rest[i : i + step] for i in range(0, len(rest), step)]
            pending = [
                loop.run_in_executor(
                    self._pool,
                    _decode_all,
                    [uploads[i] for i in chunk],
                    spec,
                    max_pixels,
                    not inline,
                )
                for chunk in chunks
            ]
            decoded = await asyncio.gather(*pending, return_exceptions=True)
            for result in decoded:
                if isinstance(result, ApiError):
                    raise result
                if isinstance(result, BaseException):
                    raise RuntimeError("image decoding failed unexpectedly") from result
            for chunk, result in zip(chunks, decoded, strict=True):
                assert isinstance(result, list)
                for i, array in zip(chunk, result, strict=True):
                    pixels[i] = array
        return to_input([p for p in pixels if p is not None])

    def close(self) -> None:
        """Frees the threads; decoding jobs not yet started are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)
