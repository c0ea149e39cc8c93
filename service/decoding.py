"""Uploaded bytes to a model's input: known formats only, pixel count checked before decoding.

Runs in a worker thread (decoding is CPU work); every failure is the client's image, so it
becomes a 400 or 413 `ApiError`, never a 500.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from service.errors import ApiError
from service.imaging import to_model_array
from service.metadata import InputSpec

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


def too_many_pixels(what: str, width: int, height: int, max_pixels: int) -> ApiError:
    return ApiError(
        413,
        "too_many_pixels",
        f"{what} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
    )


def decode_image(data: bytes, what: str, spec: InputSpec, max_pixels: int) -> np.ndarray:
    """Returns float32 `(C, H, W)` pixel/255 for `spec`; `what` names the upload in errors."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise too_many_pixels(what, width, height, max_pixels)
            img.seek(0)  # the first frame of an animation or the first page of a TIFF
            img.load()
            pixels = to_model_array(img, spec.color, spec.height, spec.width)
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
    return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
