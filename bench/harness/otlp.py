"""A local OTLP/HTTP trace endpoint: answers every export with 200 and counts the bytes it
received, so that the exports cost what a real collector's would; a subclass may read them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received += len(body)
        self.server.exports += 1
        answer = self.server.take(self.path, body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received = 0
        self.exports = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def take(self, path: str, body: bytes) -> bytes:
        """The answer's body to one export posted to `path`: empty, the export unread."""
        return b""


R = TypeVar("R", bound=Receiver)


@contextlib.contextmanager
def receiving(server: R) -> Iterator[R]:
    """`server` (a new Receiver, on a free loopback port) serving in a thread of this process."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
