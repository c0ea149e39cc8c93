"""HTTP checks and raw-socket clients: the SPEC's error body, requests a client library will
not send (cut off, malformed, slow), and answers read off the socket. The pieces the mixed
traffic needs too come from bench/harness/http.py."""

from __future__ import annotations

import socket

import httpx

from bench.harness.http import LEAKS, MULTIPART, check_error, multipart, post_head, raw_request

__all__ = [
    "CLIENT_STATUSES",
    "LEAKS",
    "MULTIPART",
    "check_error",
    "closed_by_server",
    "multipart",
    "post_head",
    "raw_request",
    "read_response",
]

# The error codes a client may cause; none of them is a 5xx.
CLIENT_STATUSES = frozenset({400, 401, 404, 405, 408, 413, 415, 422, 499, 503})


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
