"""Fixtures of the service suite: a model repository of tiny ONNX models, and live servers.

`model_repo` (session) holds `digits` v1 and v2 (1 x 28 x 28, L) and `colour` v1
(3 x 32 x 32, RGB). `server` (session) serves it on a free loopback port with an admin
token; `client` talks to it. `start_server(settings)` starts a server of a test's own,
stopped at the test's end. The helpers themselves are in tests/support.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings
from tests.support.models import ModelRepo, write_repo
from tests.support.servers import ADMIN_TOKEN, LiveServer, make_settings, running_server


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> ModelRepo:
    return write_repo(tmp_path_factory.mktemp("models"))


@pytest.fixture
def own_repo(tmp_path: Path) -> ModelRepo:
    """A repository of the test's own, free to change (reload tests)."""
    return write_repo(tmp_path / "models")


@pytest.fixture(scope="session")
def server(model_repo: ModelRepo) -> Iterator[LiveServer]:
    settings = make_settings(model_repo.path, admin_token=ADMIN_TOKEN, default_model="digits")
    with running_server(settings) as live:
        yield live


@pytest.fixture(scope="session")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def start_server() -> Iterator[Callable[..., LiveServer]]:
    """`start_server(settings, ready=True)`: a live server stopped when the test ends."""
    with contextlib.ExitStack() as stack:

        def start(settings: Settings, *, ready: bool = True) -> LiveServer:
            return stack.enter_context(running_server(settings, ready=ready))

        yield start
