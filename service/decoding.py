"""Uploaded bytes to a model's input: known formats only, pixel count checked before decoding.

Every failure is the client's image, so it becomes a 400 or 413 `ApiError`, never a 500.

Two paths give the same pixels. `fast_png` takes the common case of a scoring service, a
PNG already in the model's size and colour mode with nothing to apply (no transparency, no
EXIF orientation, no animation): libspng decodes it faster than Pillow, cheaply enough to run
on the event loop (bench/serving/serving.md). Anything else, or anything the fast path doubts, goes
to `decode_pixels` (Pillow and the shared `load_for_model` policy, under the model's decode
policy: a model's metadata says whether its JPEGs are decoded in full or reduced), which runs
in a worker thread and names the problem when there is one; `service.decode_pool` sends each
image to one or the other. PNG is lossless, so both decoders give identical samples; the tests hold
them to it on valid and mutated files. The decode policy changes nothing there: a PNG is
decoded in full under either.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyspng
from PIL import Image

from modelfile.imaging import load_for_model
from modelfile.metadata import DecodePolicy, InputSpec
from modelfile.pixels import to_input
from service.errors import ApiError

# PIL plugin ids: PPM covers PBM, PGM, PPM and PNM; JPEG covers MPO files from cameras.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
MEDIA_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/bmp",
        "image/x-bmp",
        "image/x-ms-bmp",
        "image/gif",
        "image/tiff",
        "image/webp",
        "image/x-portable-pixmap",
        "image/x-portable-anymap",
        "image/x-portable-graymap",
        "image/x-portable-bitmap",
    }
)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {"L": 0, "RGB": 2}  # 8-bit grey, 8-bit truecolour
# Chunks that change no pixel value as both decoders read them; any other (tRNS, eXIf, PLTE,
# acTL, unknown ones) sends the file to Pillow.
_INERT_CHUNKS = frozenset(
    b"IDAT gAMA cHRM sRGB iCCP sBIT pHYs tEXt zTXt iTXt tIME bKGD hIST".split()
)


def fast_png(data: bytes, spec: InputSpec, max_pixels: int) -> np.ndarray | None:
    """uint8 `(H, W, C)` pixels of a PNG that needs no conversion for `spec`, else None.

    The chunk list is walked and every CRC checked first, so a file damaged on its way
    (a flipped, lost or added byte anywhere) never gets this far; a decoding error also
    returns None and leaves the verdict to Pillow. One difference is left on purpose: libspng
    stops reading the compressed stream once it has every scanline, so a file whose CRCs are
    right but whose zlib checksum is wrong (only a broken encoder or a crafted file makes
    one) is decoded from the data it holds, where Pillow refuses it. Checking the zlib stream
    here cost as much as decoding it.
    """
    if not data.startswith(PNG_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, color_type = struct.unpack_from(">IIBB", data, 16)
    if (
        (width, height) != (spec.width, spec.height)
        or width * height > max_pixels
        or depth != 8
        or color_type != _PNG_COLOR_TYPES[spec.color]
    ):
        return None
    pos, size = 8, len(data)
    while True:
        if pos + 12 > size:
            return None  # no IEND
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > size or zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end]):
            return None
        if kind == b"IEND":
            break
        if pos > 8 and kind not in _INERT_CHUNKS:
            return None
        pos = end
    try:
        pixels = pyspng.load(data)
    except Exception:
        return None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape != (spec.height, spec.width, spec.channels) or pixels.dtype != np.uint8:
        return None
    return pixels


def too_many_pixels(what: str, width: int, height: int, max_pixels: int) -> ApiError:
    return ApiError(
        413,
        "too_many_pixels",
        f"{what} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
    )


def best_pixels(
    data: bytes, what: str, spec: InputSpec, max_pixels: int, policy: DecodePolicy = "full"
) -> np.ndarray:
    """uint8 `(H, W, C)` pixels for `spec`: libspng where `fast_png` takes the file, else
    Pillow (`decode_pixels`, which names the problem when there is one)."""
    fast = fast_png(data, spec, max_pixels)
    return fast if fast is not None else decode_pixels(data, what, spec, max_pixels, policy)


def decode_image(
    data: bytes, what: str, spec: InputSpec, max_pixels: int, policy: DecodePolicy = "full"
) -> np.ndarray:
    """Returns float32 `(C, H, W)` pixel/255 for `spec`; `what` names the upload in errors.
    One image by `decode_pixels` alone; a request's uploads go through
    `service.decode_pool.DecodePool`, which tries `fast_png` first."""
    return to_input([decode_pixels(data, what, spec, max_pixels, policy)])[0]


def decode_pixels(
    data: bytes, what: str, spec: InputSpec, max_pixels: int, policy: DecodePolicy = "full"
) -> np.ndarray:
    """uint8 `(H, W, C)` pixels for `spec` by Pillow and the shared policy, JPEGs decoded as
    `policy` (the model's `decode`) says; `what` names the upload in errors."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise too_many_pixels(what, width, height, max_pixels)
            img.seek(0)  # the first frame of an animation or the first page of a TIFF
            pixels = load_for_model(img, spec.color, spec.height, spec.width, policy)
    except ApiError:
        raise
    except Image.DecompressionBombError as exc:
        raise ApiError(
            413, "too_many_pixels", f"{what} has more pixels than the limit of {max_pixels}"
        ) from exc
    except Image.UnidentifiedImageError as exc:
        raise ApiError(
            400,
            "invalid_image",
            f"{what} is not an image in a supported format ({', '.join(FORMATS)})",
        ) from exc
    except Exception as exc:  # PIL raises many types on corrupt or truncated data
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ApiError(
            400, "invalid_image", f"{what} could not be decoded: {detail[:200]}"
        ) from exc
    return pixels
