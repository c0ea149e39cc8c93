"""`service.server.serve`: what it hands uvicorn, with uvicorn itself replaced."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service import server
from service.settings import Settings


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, dict[str, Any]]]]:
    """The arguments of each `uvicorn.run`, or of the uvicorn config the supervisor of several
    workers would run (nothing is bound or started); the signal handlers and the environment
    that `serve` sets are restored."""
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(server.uvicorn, "run", lambda app, **kw: calls.append((app, kw)))

    class Supervisor:
        def __init__(self, config: uvicorn.Config, sockets: list[Any], directory: Path) -> None:
            options = {"factory": config.factory, "workers": config.workers}
            calls.append((config.app, {**options, "access_log": config.access_log}))

        def run(self) -> None:
            pass

    monkeypatch.setattr(server, "Supervisor", Supervisor)
    monkeypatch.setattr(uvicorn.Config, "bind_socket", lambda config: None)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    environment = dict(os.environ)
    yield calls
    os.environ.clear()
    os.environ.update(environment)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize(("asked", "passed"), [({}, False), ({"access_log": True}, True)])
def test_the_access_log_is_off_unless_asked(
    tmp_path: Path,
    uvicorn_calls: list[tuple[Any, dict[str, Any]]],
    asked: dict[str, Any],
    passed: bool,
) -> None:
    server.serve(Settings(models_dir=tmp_path, workers=1, **asked))
    ((_, options),) = uvicorn_calls
    assert options["access_log"] is passed
    assert "workers" not in options


def test_several_workers_rebuild_the_app_from_the_environment(
    tmp_path: Path,
    uvicorn_calls: list[tuple[Any, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEEPSVDD_WORKERS", "auto")  # replaced by the resolved count
    server.serve(Settings(models_dir=tmp_path, workers=3))
    ((app, options),) = uvicorn_calls
    assert app == "service.server:app_from_environment" and options["factory"] is True
    assert options["workers"] == 3 and options["access_log"] is False
    assert Settings().workers == 3
