"""Reading a scoring request's images: `multipart/form-data` `files` parts or one raw image body.

The body is read whole (`service.middleware.BodyLimitMiddleware` underneath `request.stream()`
bounds it while it arrives) and split with `bytes.find`, which costs a small fraction of what
a callback-per-event streaming parser did (bench/serving/serving.md). Delimiters are counted as the
chunks arrive, so a body of thousands of parts ends in a 413 before the rest of it is read.
Parts follow RFC 7578: a delimiter line, header lines, a blank line, the data; the part
headers are bounded, and every malformed body is a 400 `bad_multipart` that says what is
wrong. An empty part or a part of a non-image type spoils only itself: it carries its error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from service.decoding import MEDIA_TYPES
from service.errors import ApiError

FILES_FIELD = "files"
MAX_FILENAME_CHARS = 255
MAX_PART_HEADER_BYTES = 16 * 1024
_GENERIC_TYPES = frozenset({"application/octet-stream", ""})
_MEDIA_BYTES = frozenset(t.encode() for t in MEDIA_TYPES | _GENERIC_TYPES)
# The disposition every browser, curl and requests send; anything else (escapes, other
# parameters, other spellings) goes through the general parser.
_PLAIN_DISPOSITION = re.compile(
    rb'form-data; ?name="([^"\\]*)"(?:; ?filename="([^"\\]*)")?', re.IGNORECASE
)


@dataclass(frozen=True)
class Upload:
    """One uploaded image, its position in the request and its client-side file name."""

    index: int
    filename: str | None
    data: bytes
    # Set when the part itself is unusable (empty, not an image type); `data` is then unused.
    error: ApiError | None = None

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


def _bad(detail: str) -> ApiError:
    return ApiError(400, "bad_multipart", f"malformed multipart body: {detail}")


def _part_headers(block: bytes, index: int) -> dict[bytes, bytes]:
    """Header lines of one part, names lower-cased; a line without a name is an error."""
    headers: dict[bytes, bytes] = {}
    if not block:
        return headers
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip(b" \t"):
            raise _bad(f"part {index} has a header line that is not 'Name: value'")
        headers[name.lower()] = value.strip(b" \t")
    return headers


def _disposition(value: bytes) -> tuple[str | None, str | None]:
    """(field name, file name) from a part's Content-Disposition."""
    plain = _PLAIN_DISPOSITION.fullmatch(value)
    if plain is not None:
        name, filename = plain.group(1), plain.group(2)
    else:
        kind, options = parse_options_header(value)
        if kind != b"form-data":
            return None, None
        name, filename = options.get(b"name"), options.get(b"filename")
    return (
        None if name is None else _decode_header_text(name),
        None if filename is None else _decode_header_text(filename)[:MAX_FILENAME_CHARS],
    )


def _check_part(
    headers: dict[bytes, bytes], index: int, max_images: int
) -> tuple[str | None, ApiError | None]:
    """Checks one part's headers; returns its file name and what spoils the part, if anything."""
    field, filename = _disposition(headers.get(b"content-disposition", b""))
    if field != FILES_FIELD:
        shown = "without a form-data name" if field is None else f"named {field[:64]!r}"
        raise ApiError(
            400,
            "unexpected_field",
            f"multipart part {index} is {shown}; send images as {FILES_FIELD!r} parts",
        )
    if index >= max_images:
        raise ApiError(413, "too_many_images", f"more than {max_images} images in one request")
    media = headers.get(b"content-type", b"")
    if media not in _MEDIA_BYTES:
        media = parse_options_header(media)[0]
    if media not in _MEDIA_BYTES:
        return filename, _unsupported(media.decode("latin-1"), Upload(index, filename, b"").what)
    return filename, None


def split_multipart(body: bytes, boundary: bytes, max_images: int) -> list[Upload]:
    """The `files` parts of a whole multipart body, in order; raises `ApiError` when the body
    as a whole is unusable (malformed, a part not named `files`, too many parts)."""
    dash = b"--" + boundary
    delimiter = b"\r\n" + dash
    if body.startswith(dash):
        pos = len(dash)
    else:  # a preamble, which the reader ignores
        found = body.find(delimiter)
        if found < 0:
            raise _bad("the boundary of the Content-Type header does not occur in it")
        pos = found + len(delimiter)
    uploads: list[Upload] = []
    while True:
        if body.startswith(b"--", pos):
            break  # the close delimiter; what follows is the epilogue
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise _bad("a boundary line is not followed by a line break")
        start = line_end + 2
        index = len(uploads)
        if body.startswith(b"\r\n", start):  # a part without headers
            headers_end, data_start = start, start + 2
        else:
            headers_end = body.find(b"\r\n\r\n", start)
            if headers_end < 0:
                raise _bad(f"the body ends inside the headers of part {index}")
            if headers_end - start > MAX_PART_HEADER_BYTES:
                raise _bad(f"the headers of part {index} are over {MAX_PART_HEADER_BYTES} bytes")
            data_start = headers_end + 4
        headers = _part_headers(body[start:headers_end], index)
        filename, error = _check_part(headers, index, max_images)
        end = _next_delimiter(body, delimiter, data_start)
        if end < 0:
            raise _bad("the body ends inside a part")
        upload = Upload(index, filename, body[data_start:end], error)
        if error is None and not upload.data:
            upload = Upload(
                index, filename, b"", ApiError(400, "empty_upload", f"{upload.what} is empty")
            )
        uploads.append(upload)
        pos = end + len(delimiter)
    if not uploads:
        raise ApiError(400, "no_images", f"the multipart body has no {FILES_FIELD!r} parts")
    return uploads


def _next_delimiter(body: bytes, delimiter: bytes, start: int) -> int:
    """Where the delimiter that ends a part begins: CRLF, dashes and the boundary, then
    '--', blanks or a line break (an occurrence followed by anything else is data)."""
    while True:
        found = body.find(delimiter, start)
        if found < 0:
            return found
        after = body[found + len(delimiter) : found + len(delimiter) + 1]
        if after in (b"-", b"\r", b" ", b"\t"):
            return found
        start = found + 1


async def _read_multipart(
    request: Request, boundary: bytes | None, max_images: int
) -> list[Upload]:
    if not boundary:
        raise ApiError(400, "bad_multipart", "multipart/form-data without a boundary")
    if len(boundary) > 200:
        raise _bad("the boundary is longer than 200 bytes")
    delimiter = b"\r\n--" + boundary
    chunks: list[bytes] = []
    seen, tail = 0, b""
    async for chunk in request.stream():
        chunks.append(chunk)
        # Boundaries are counted as the body arrives (a delimiter cut by a chunk edge is
        # found in `tail + chunk`), so thousands of parts stop the read early.
        window = tail + chunk
        seen += window.count(delimiter)
        tail = window[-(len(delimiter) - 1) :] if len(delimiter) > 1 else b""
        if seen > max_images + 1:  # n parts have n or n + 1 (after a preamble) of them
            raise _too_many_parts(b"".join(chunks), boundary, max_images)
    return split_multipart(b"".join(chunks), boundary, max_images)


def _too_many_parts(received: bytes, boundary: bytes, max_images: int) -> ApiError:
    """413 for a body of more parts than images allowed: `too_many_images` when the parts so
    far are all images, else `too_many_parts`, which names the form fields."""
    try:
        split_multipart(received, boundary, max_images)
    except ApiError as exc:
        if exc.code == "too_many_images":
            return exc
    return ApiError(
        413,
        "too_many_parts",
        f"the multipart body has more than {max_images + 1} parts, not all of them "
        f"{FILES_FIELD!r} images: too many form fields; send at most {max_images} images as "
        f"{FILES_FIELD!r} parts and no other fields",
    )


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
