"""Limits on the request head, kept by uvicorn's httptools protocol while the head arrives:
431 past `max_header_bytes` of headers or `max_headers` header lines, 414 past
`max_header_bytes` of request target; every such answer (and uvicorn's own 400 for a request
that is not HTTP) is the JSON error format, on a connection that then closes.

The parser holds an unfinished header line in memory, so the bytes of an unfinished head are
counted as they arrive (every read that goes on with a head begun before it): an 8 MB header is
refused after `max_header_bytes` and at most one more read, not read whole.
"""

from __future__ import annotations

import functools
import http
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadRefused(Exception):
    """Raised from a parser callback: the request head breaks a limit."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _headers_too_large(limit: int) -> HeadRefused:
    return HeadRefused(431, "headers_too_large", f"the request headers are over {limit} bytes")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads and JSON errors."""

    def __init__(self, *args: Any, max_header_bytes: int, max_headers: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self._in_head = False
        self._head_received = 0  # bytes of the reads that went on with this request's head
        self._header_bytes = 0
        self._header_count = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_received = self._header_bytes = self._header_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_header_bytes:
            raise HeadRefused(
                414, "uri_too_long", f"the request target is over {self.max_header_bytes} bytes"
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_count > self.max_headers:
            raise HeadRefused(
                431, "too_many_headers", f"the request has over {self.max_headers} header lines"
            )
        if self._header_bytes > self.max_header_bytes:
            raise _headers_too_large(self.max_header_bytes)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head's bytes counted and its refusals answered."""
        continues_head = self._in_head  # else the head may start inside `data`, after a body
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            refused = exc.__context__
            if isinstance(refused, HeadRefused):
                self._refuse(refused)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("the request is not valid HTTP/1.1")
            return
        if self._in_head and continues_head:
            self._head_received += len(data)
            if self._head_received > self.max_header_bytes:
                self._refuse(_headers_too_large(self.max_header_bytes))

    def send_400_response(self, msg: str) -> None:
        self._refuse(HeadRefused(400, "bad_request", msg))

    def _refuse(self, refused: HeadRefused) -> None:
        """Answers with the JSON error and closes, reading nothing more of this connection."""
        body = orjson.dumps({"error": {"code": refused.code, "message": refused.message}})
        phrase = http.HTTPStatus(refused.status).phrase
        head = [f"HTTP/1.1 {refused.status} {phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
        ]
        self._in_head = False
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


def limited_protocol(max_header_bytes: int, max_headers: int) -> functools.partial[Any]:
    """The protocol for uvicorn's `http` option: a picklable factory, as the workers need."""
    return functools.partial(
        LimitedHttpToolsProtocol, max_header_bytes=max_header_bytes, max_headers=max_headers
    )
