"""Where a request's images are decoded: small ready-made PNGs on the event loop, the rest in
a thread pool, in one job per CPU; `service.decoding` holds the decoders themselves."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from modelfile.metadata import DecodePolicy, InputSpec
from modelfile.pixels import to_input
from service.cpus import available_cpus
from service.decoding import best_pixels, decode_pixels, fast_png
from service.errors import ApiError
from service.uploads import Upload

# Models whose input has at most this many samples get their ready-made PNGs decoded on the
# event loop: libspng decodes an image that small faster than a thread hand-off costs
# (bench/serving/serving.md has the figures).
INLINE_SAMPLES = 64 * 64 * 3


@dataclass(frozen=True)
class Decoded:
    """A request's images after decoding: the model input of those that decoded, in upload
    order, and the error of each one that did not, by upload index."""

    images: np.ndarray
    scored: list[Upload]
    errors: dict[int, ApiError]


def _decode_one(
    upload: Upload, spec: InputSpec, policy: DecodePolicy, max_pixels: int, try_fast: bool
) -> np.ndarray | ApiError:
    decode = best_pixels if try_fast else decode_pixels
    try:
        return decode(upload.data, upload.what, spec, max_pixels, policy)
    except ApiError as exc:
        return exc


def _decode_all(
    uploads: list[Upload], spec: InputSpec, policy: DecodePolicy, max_pixels: int, try_fast: bool
) -> list[np.ndarray | ApiError]:
    """In a pool thread: uint8 `(H, W, C)` pixels of each upload, or the error that says why
    not. `try_fast`: try `fast_png` first (False when the event loop has tried it already)."""
    return [_decode_one(u, spec, policy, max_pixels, try_fast) for u in uploads]


class DecodePool:
    """The app's decoding threads and the rule that splits a request's images among them."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._jobs = max(2, available_cpus())
        self._pool = ThreadPoolExecutor(self._jobs, thread_name_prefix="decode")

    async def decode(self, uploads: list[Upload], spec: InputSpec, policy: DecodePolicy) -> Decoded:
        """Decodes the uploads for a model whose input is `spec` and decode policy `policy`
        (both from its metadata): float32 `(n, C, H, W)` pixel/255 of those that decode, in
        upload order, and a 400 or 413 `ApiError` for each of the others.

        PNGs already in a small model's size and mode decode here on the event loop
        (`service.decoding.fast_png`); the others go to the thread pool in one job per
        CPU, not one per image: a small image decodes in less time than a future and a
        loop wake-up per image cost.
        """
        max_pixels = self.max_pixels
        inline = spec.channels * spec.height * spec.width <= INLINE_SAMPLES
        results: list[np.ndarray | ApiError | None] = [u.error for u in uploads]
        if inline:
            for i, u in enumerate(uploads):
                if u.error is None:
                    results[i] = fast_png(u.data, spec, max_pixels)
        rest = [i for i, r in enumerate(results) if r is None]
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
                    policy,
                    max_pixels,
                    not inline,
                )
                for chunk in chunks
            ]
            decoded = await asyncio.gather(*pending, return_exceptions=True)
            for result in decoded:
                if isinstance(result, BaseException):
                    raise RuntimeError("image decoding failed unexpectedly") from result
            for chunk, result in zip(chunks, decoded, strict=True):
                assert isinstance(result, list)
                for i, item in zip(chunk, result, strict=True):
                    results[i] = item
        pixels = [r for r in results if isinstance(r, np.ndarray)]
        images = (
            to_input(pixels)
            if pixels
            else np.zeros((0, spec.channels, spec.height, spec.width), dtype=np.float32)
        )
        return Decoded(
            images=images,
            scored=[u for u, r in zip(uploads, results, strict=True) if isinstance(r, np.ndarray)],
            errors={
                u.index: r for u, r in zip(uploads, results, strict=True) if isinstance(r, ApiError)
            },
        )

    def close(self) -> None:
        """Frees the threads; decoding jobs not yet started are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)
