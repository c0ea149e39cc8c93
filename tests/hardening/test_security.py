"""Security: the admin token (constant-time, on every mutating route), model names that try
to leave the repository, and a container that does not run as root.
"""

from __future__ import annotations

import hmac
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from service.routers import admin
from tests.support.http import check_error, raw_request, read_response
from tests.support.images import files
from tests.support.models import ModelRepo
from tests.support.processes import ROOT
from tests.support.servers import ADMIN_TOKEN, AUTH, LiveServer, make_settings, running_server

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Scoring changes nothing but counters; /v2/{path:path} only answers 404 or 405.
PUBLIC_MUTATING = frozenset(
    {
        "/score",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/{path:path}",
    }
)
# A request that succeeds with the token, for the routes with a path parameter or a body. In
# the app's order promote precedes rollback; the test removes the policy they leave.
TRAFFIC = "/admin/models/digits/traffic"
EXAMPLES: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("PUT", "/admin/models/{name}/traffic"): (TRAFFIC, {"weights": {"1": 100}}),
    ("DELETE", "/admin/models/{name}/traffic"): (TRAFFIC, None),
    ("POST", "/admin/models/{name}/promote"): ("/admin/models/digits/promote", {"version": 1}),
    ("POST", "/admin/models/{name}/rollback"): ("/admin/models/digits/rollback", None),
}


def _example(method: str, path: str) -> tuple[str, dict[str, Any] | None]:
    return EXAMPLES.get((method, path), (path, None))


@pytest.fixture(scope="module")
def live(shared_repo: ModelRepo) -> Iterator[LiveServer]:
    with running_server(make_settings(shared_repo.path, admin_token=ADMIN_TOKEN)) as server:
        yield server


def _api_routes(routes: list[BaseRoute]) -> Iterator[APIRoute]:
    """Every endpoint, also inside included routers (FastAPI >= 0.16x keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _api_routes(nested.routes)


def _mutating_routes(live: LiveServer) -> list[tuple[str, str]]:
    found = [
        (method, route.path)
        for route in _api_routes(live.app.routes)
        if route.path not in PUBLIC_MUTATING
        for method in sorted((route.methods or set()) & MUTATING)
    ]
    # The walk misses nothing the schema documents (no prefix added on inclusion either).
    documented = {
        (method.upper(), path)
        for path, operations in live.app.openapi()["paths"].items()
        for method in operations
        if method.upper() in MUTATING and path not in PUBLIC_MUTATING
    }
    assert documented <= set(found), documented - set(found)
    return found


def test_every_mutating_route_needs_the_token(live: LiveServer, shared_repo: ModelRepo) -> None:
    routes = _mutating_routes(live)
    assert ("POST", "/admin/reload") in routes
    wrong = [
        {},
        {"Authorization": "Bearer wrong-token-0042"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
        {"X-Admin-Token": ADMIN_TOKEN},
    ]
    with live.client() as client:
        for method, route in routes:
            path, body = _example(method, route)
            for headers in wrong:
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                check_error(response, shared_repo.path, ADMIN_TOKEN)
            assert client.request(method, path, json=body, headers=AUTH).status_code == 200
        client.delete(TRAFFIC, headers=AUTH)


def test_without_a_configured_token_mutating_routes_do_not_exist(shared_repo: ModelRepo) -> None:
    with running_server(make_settings(shared_repo.path)) as live, live.client() as client:
        routes = _mutating_routes(live)
        assert routes
        for method, route in routes:
            path, body = _example(method, route)
            for headers in ({}, AUTH, {"Authorization": "Bearer x"}):
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 404, (method, path)
                check_error(response, shared_repo.path)


def test_the_token_is_compared_in_constant_time(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(admin.hmac, "compare_digest", spy)
    with live.client() as client:
        wrong = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
        right = client.post("/admin/reload", headers=AUTH)
    assert (wrong.status_code, right.status_code) == (401, 200)
    assert calls == [(b"nope", ADMIN_TOKEN.encode()), (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode())]
    # No other comparison of the token in the module: only compare_digest sees it.
    source = Path(admin.__file__).read_text()
    assert re.search(r"(given|expected|credentials)[^\n]*(==|!=)", source) is None


HOSTILE_NAMES = [
    "../../etc/passwd",
    "..",
    "../digits",
    "digits/../digits",
    "/etc/passwd",
    "..\\..\\etc\\passwd",
    "%2e%2e%2f%2e%2e%2fetc",
    "..%2F..%2Fetc%2Fpasswd",
    "%252e%252e%252f",
    "．．／etc",  # fullwidth dots and slash
    "digits\u2044..",  # fraction slash
    "digi\u0074s\u200b",  # zero-width space
    "ｄｉｇｉｔｓ",  # fullwidth letters, NFKC-equal to a real name
    "digits\x00",
    "C:\\Windows",
    "~root",
    "digits/1/model.onnx",
    "x" * 4000,
]


class FileOpens:
    """Every file the interpreter opens while `watching` is set (an audit hook)."""

    def __init__(self) -> None:
        self.watching = threading.Event()
        self.opened: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[object, ...]) -> None:
        if event == "open" and self.watching.is_set() and isinstance(args[0], str | bytes):
            self.opened.append(str(args[0]))


@pytest.fixture(scope="module")
def file_opens() -> FileOpens:
    return FileOpens()


def test_model_names_never_reach_the_filesystem(
    live: LiveServer, shared_repo: ModelRepo, file_opens: FileOpens
) -> None:
    port = int(live.url.rsplit(":", 1)[1])
    answered: list[int] = []
    upload = files(1)
    with live.client() as client:
        assert client.post("/score", files=upload).status_code == 200  # imports done
    file_opens.watching.set()
    try:
        with live.client() as client:
            for name in HOSTILE_NAMES:
                for params in ({"model": name}, {"model": name, "version": "1"}):
                    response = client.post("/score", params=params, files=upload)
                    assert response.status_code in (404, 422), (name, response.text)
                    check_error(response, shared_repo.path)
                    answered.append(response.status_code)
                # Sent as written ("../" and "%2e" untouched); only bytes HTTP forbids escaped.
                target = "/models/" + quote(name, safe="/%\\:~")
                request = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                with raw_request(port, request) as sock:
                    response = read_response(sock)
                assert response.status_code in (400, 404, 422), (target, response.status_code)
                if response.headers.get("content-type") == "application/json":
                    check_error(response, shared_repo.path)
                answered.append(response.status_code)
    finally:
        file_opens.watching.clear()
    assert len(answered) == 3 * len(HOSTILE_NAMES)
    # FastAPI reads an endpoint's own source once, to describe its errors: code, not data.
    assert [path for path in file_opens.opened if not path.endswith((".py", ".pyc"))] == []


def test_the_container_does_not_run_as_root() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    users = [line.split()[1] for line in lines[last_from:] if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER: it runs as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and group not in ("root", "0"), users[-1]
