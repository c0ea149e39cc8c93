"""HTTP pieces of the mixed traffic: the SPEC's error body checked, multipart bodies, and
requests a client library will not send (cut off), over a raw socket."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from bench.harness.processes import ROOT

# Nothing of the server's insides may reach a client: no traceback, no installation path.
LEAKS = ("Traceback", 'File "', "site-packages", "/usr/", str(ROOT))
MULTIPART = "multipart/form-data; boundary=hardening-b0undary"


def check_error(response: httpx.Response, *secrets: str | Path) -> dict[str, str]:
    """The answer is `{"error": {"code", "message"}}` and names no server internals."""
    assert response.status_code >= 400, response.status_code
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    for needle in (*LEAKS, *(str(s) for s in secrets)):
        assert needle not in response.text, f"{needle!r} in {response.text!r}"
    return dict(error)


def raw_request(port: int, head: bytes, body: bytes = b"") -> socket.socket:
    """A connected socket that has sent `head` (request line and headers) and `body`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head + body)
    return sock


def post_head(target: str, content_type: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode("latin-1")


def multipart(parts: list[tuple[str, bytes, str]], boundary: str = "hardening-b0undary") -> bytes:
    out = b""
    for name, data, media in parts:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: {media}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()
