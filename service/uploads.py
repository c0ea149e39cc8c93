"""Reading a scoring request's images: `multipart/form-data` `files` parts or one raw image body.

The body streams through a bounded parser: the part count is checked as each part's headers
arrive, so thousands of parts end in a 413 without being buffered. The byte limit itself is
enforced by `service.middleware.BodyLimitMiddleware` underneath `request.stream()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from service.decoding import MEDIA_TYPES
from service.errors import ApiError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILES_FIELD = "files"
MAX_FILENAME_CHARS = 255
_GENERIC_TYPES = frozenset({"application/octet-stream", ""})


@dataclass(frozen=True)
class Upload:
    """One uploaded image, its position in the request and its client-side file name."""

    index: int
    filename: str | None
    data: bytes

    @property
    def what(self) -> str:
        """How error messages name this upload."""
        if self.filename is None:
            return f"image {self.index}"
        return f"file {self.filename!r} (image {self.index})"


def _unsupported(media_type: str, what: str) -> ApiError:
    shown = media_type or "no Content-Type"
    return ApiError(
        415,
        "unsupported_media_type",
        f"{what} has {shown}; send multipart/form-data with {FILES_FIELD!r} parts or one image "
        f"body of type {', '.join(sorted(MEDIA_TYPES))}",
    )


def _decode_header_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Parts:
    """python-multipart callbacks that collect `files` parts and enforce the part limits."""

    def __init__(self, max_images: int) -> None:
        self.max_images = max_images
        self.uploads: list[Upload] = []
        self.in_part = False
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._filename: str | None = None
        self._data = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.in_part = True
        self._headers = {}
        self._filename = None
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        index = len(self.uploads)
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        field = _decode_header_text(options.get(b"name", b""))
        if field != FILES_FIELD:
            raise ApiError(
                400,
                "unexpected_field",
                f"multipart part {index} is named {field[:64]!r}; send images as "
                f"{FILES_FIELD!r} parts",
            )
        if index >= self.max_images:
            raise ApiError(
                413, "too_many_images", f"more than {self.max_images} images in one request"
            )
        if b"filename" in options:
            self._filename = _decode_header_text(options[b"filename"])[:MAX_FILENAME_CHARS]
        media_type, _ = parse_options_header(self._headers.get(b"content-type", b""))
        media = media_type.decode("latin-1")
        if media not in MEDIA_TYPES and media not in _GENERIC_TYPES:
            raise _unsupported(media, Upload(index, self._filename, b"").what)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]

    def on_part_end(self) -> None:
        upload = Upload(len(self.uploads), self._filename, bytes(self._data))
        if not upload.data:
            raise ApiError(400, "empty_upload", f"{upload.what} is empty")
        self.uploads.append(upload)
        self.in_part = False


async def _read_multipart(
    request: Request, boundary: bytes | None, max_images: int
) -> list[Upload]:
    if not boundary:
        raise ApiError(400, "bad_multipart", "multipart/form-data without a boundary")
    parts = _Parts(max_images)
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {exc}") from exc
    if parts.in_part:
        raise ApiError(400, "bad_multipart", "the multipart body ends inside a part")
    if not parts.uploads:
        raise ApiError(400, "no_images", f"the multipart body has no {FILES_FIELD!r} parts")
    return parts.uploads


async def read_uploads(request: Request, max_images: int) -> list[Upload]:
    """The request's images in upload order; raises `ApiError` (400, 413, 415) otherwise."""
    header = request.headers.get("content-type", "").encode("latin-1")
    media_type, options = parse_options_header(header)
    media = media_type.decode("latin-1")
    if media == "multipart/form-data":
        return await _read_multipart(request, options.get(b"boundary"), max_images)
    if media not in MEDIA_TYPES:
        raise _unsupported(media, "the request body")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    if not body:
        raise ApiError(400, "empty_upload", "the request body is empty")
    return [Upload(0, None, bytes(body))]
