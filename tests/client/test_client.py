"""The Python client against a real uvicorn server: every image kind, typed results, errors,
maps, the async client, and bounded retries on 503 that honour Retry-After."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import client.http
from client import AsyncClient, Client, ImageResult, ScoreResult, ServiceError
from tests.support.images import image_bytes, noise_image
from tests.support.models import TinyModel, build_model
from tests.support.servers import LiveServer, make_settings, running_server


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_model(tmp_path_factory.mktemp("models"), "tiny", 1)


@pytest.fixture(scope="module")
def live(tiny: TinyModel) -> Iterator[LiveServer]:
    with running_server(make_settings(tiny.path.parents[2])) as server:
        yield server


def test_every_kind_of_image_scores_as_its_pixels(
    tiny: TinyModel, live: LiveServer, tmp_path: Path
) -> None:
    pictures = [noise_image(i) for i in range(4)]
    path = tmp_path / "on-disk.png"
    pictures[0].save(path)
    pixels = [np.asarray(p) for p in pictures]
    images: list[Any] = [path, image_bytes(pictures[1]), pictures[2], pixels[3], pixels[3] / 255.0]
    with Client(live.url) as c:
        result = c.score(images, model="tiny", threshold="q0.9")
    assert isinstance(result, ScoreResult) and (result.model, result.version) == ("tiny", 1)
    assert result.threshold.name == "q0.9" and result.threshold.value == tiny.thresholds["q0.9"]
    assert all(isinstance(r, ImageResult) for r in result.results)
    assert result.results[0].filename == "on-disk.png"
    expected = tiny.reference(np.stack([*pixels, pixels[3]])[:, :, :, None])
    assert [r.score for r in result.results] == pytest.approx(expected.tolist(), rel=1e-5)
    assert [r.is_anomaly for r in result.results] == [s > result.threshold.value for s in expected]
    assert all(r.anomaly_map is None for r in result.results)


def test_explain_returns_typed_maps(live: LiveServer) -> None:
    with Client(live.url) as c:
        (only,) = c.score([noise_image(5)], explain=True).results
    assert only.anomaly_map is not None
    assert only.anomaly_map.array().shape == (28, 28)
    assert Image.open(io.BytesIO(only.anomaly_map.png_bytes())).format == "PNG"


def test_errors_carry_the_status_and_code(live: LiveServer) -> None:
    with Client(live.url) as c:
        with pytest.raises(ServiceError) as unknown:
            c.score([noise_image(0)], model="nosuch")
        with pytest.raises(ServiceError) as broken:
            c.score([b"not an image"])
        assert c.ready() and c.models()["models"][0]["name"] == "tiny"
    assert (unknown.value.status, unknown.value.code) == (404, "model_not_found")
    assert (broken.value.status, broken.value.code) == (400, "invalid_image")
    with pytest.raises(TypeError, match="path, bytes, PIL or array"):
        Client(live.url).score([3.5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        Client(live.url).score([])


def test_the_async_client_scores_concurrently(tiny: TinyModel, live: LiveServer) -> None:
    async def go() -> list[ScoreResult]:
        async with AsyncClient(live.url) as c:
            assert await c.ready()
            return await asyncio.gather(*(c.score([noise_image(i)]) for i in range(6)))

    results = asyncio.run(go())
    pixels = np.stack([np.asarray(noise_image(i))[:, :, None] for i in range(6)])
    scores = [r.results[0].score for r in results]
    assert scores == pytest.approx(tiny.reference(pixels).tolist(), rel=1e-5)


class Busy:
    """A stub server: 503 with Retry-After for the first `busy` requests, then an answer."""

    def __init__(self, busy: int, retry_after: str) -> None:
        self.busy, self.retry_after, self.seen = busy, retry_after, 0

    async def score(self, request: Request) -> JSONResponse:
        self.seen += 1
        await request.body()
        if self.seen <= self.busy:
            return JSONResponse(
                {"error": {"code": "queue_full", "message": "busy"}},
                status_code=503,
                headers={"Retry-After": self.retry_after},
            )
        body = {
            "model": "m",
            "version": 1,
            "threshold": {"name": "q0.95", "value": 1.0},
            "results": [{"index": 0, "filename": "x", "score": 2.0, "is_anomaly": True}],
        }
        return JSONResponse(body)


@pytest.fixture
def busy_server() -> Iterator[tuple[str, Busy]]:
    stub = Busy(2, "1")
    app = Starlette(routes=[Route("/score", stub.score, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", stub
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_503_is_retried_after_the_retry_after_seconds(
    busy_server: tuple[str, Busy], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, stub = busy_server
    waits: list[float] = []
    monkeypatch.setattr(client.http, "sleep", waits.append)
    with Client(url) as c:
        result = c.score([b"x"])
    assert result.results[0].score == 2.0 and stub.seen == 3 and waits == [1.0, 1.0]


def test_retries_are_bounded_and_long_waits_capped(
    busy_server: tuple[str, Busy], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, stub = busy_server
    stub.busy, stub.retry_after = 100, "3600"
    waits: list[float] = []
    monkeypatch.setattr(client.http, "sleep", waits.append)
    with Client(url, retries=2, max_retry_wait=5.0) as c, pytest.raises(ServiceError) as err:
        c.score([b"x"])
    assert err.value.status == 503 and err.value.code == "queue_full"
    assert stub.seen == 3 and waits == [5.0, 5.0]


def test_the_async_client_retries_too(
    busy_server: tuple[str, Busy], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, stub = busy_server
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(client.http, "async_sleep", record)

    async def go() -> ScoreResult:
        async with AsyncClient(url) as c:
            return await c.score([b"x"])

    assert asyncio.run(go()).results[0].is_anomaly and waits == [1.0, 1.0] and stub.seen == 3
