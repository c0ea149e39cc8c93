"""HTTP checks and raw-socket clients: the SPEC's error body, requests a client library will
not send (cut off, malformed, slow), and answers read off the socket."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.support.processes import ROOT

# Nothing of the server's insides may reach a client: no traceback, no installation path.
LEAKS = ("Traceback", 'File "', "site-packages", "/usr/", str(ROOT))
# The error codes a client may cause; none of them is a 5xx.
CLIENT_STATUSES = frozenset({400, 401, 404, 405, 408, 413, 415, 422, 499, 503})


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


def read_response(sock: socket.socket) -> httpx.Response:
    """One HTTP/1.1 answer read off a raw socket (its body by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(name, value) for name, _, value in (line.partition(": ") for line in lines[1:])]
    length = int({name.lower(): value for name, value in headers}.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-answer"
        body += chunk
    return httpx.Response(int(lines[0].split(" ")[1]), headers=headers, content=body)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (waits up to the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


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


MULTIPART = "multipart/form-data; boundary=hardening-b0undary"
