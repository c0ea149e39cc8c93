"""Hostile uploads and the limits over real HTTP: every answer is a JSON 4xx, never a 5xx."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import service.repository
from tests.support.images import broken_images, image_bytes, noise_image, odd_images
from tests.support.metrics import metric_value
from tests.support.models import ModelRepo
from tests.support.servers import LiveServer, make_settings, wait_ready

StartServer = Callable[..., LiveServer]


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def _multipart(parts: list[bytes], boundary: str = "XyZ") -> tuple[bytes, dict[str, str]]:
    body = b"".join(f"--{boundary}\r\n".encode() + part + b"\r\n" for part in parts)
    body += f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def _part(
    data: bytes, name: str = "files", filename: str = "a.png", ctype: str = "image/png"
) -> bytes:
    head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    head += f"Content-Type: {ctype}\r\n\r\n"
    return head.encode() + data


@pytest.mark.parametrize("name", sorted(odd_images()))
def test_odd_but_valid_images_score(client: httpx.Client, name: str) -> None:
    data, ctype = odd_images()[name]
    as_part = client.post("/score", files={"files": (name, data, ctype)})
    assert as_part.status_code == 200, as_part.text
    raw = client.post("/score", content=data, headers={"content-type": ctype})
    assert raw.status_code == 200, raw.text
    assert as_part.json()["results"][0]["score"] == raw.json()["results"][0]["score"]


# The codes an image's own error may have, by the status the image alone gets.
IMAGE_ERROR_CODES = {
    400: {"invalid_image", "empty_upload"},
    413: {"too_many_pixels"},
    415: {"unsupported_media_type"},
}


@pytest.mark.parametrize("name", sorted(broken_images()))
def test_hostile_uploads_get_client_errors(client: httpx.Client, name: str) -> None:
    data, ctype, status = broken_images()[name]
    good = ("good.png", image_bytes(noise_image(1)), "image/png")
    # Beside a good image: the good one scores, the bad one carries its own error.
    mixed = client.post("/score", files=[("files", good), ("files", (name, data, ctype))])
    assert mixed.status_code == 200, mixed.text
    scored, failed = mixed.json()["results"]
    assert scored["index"] == 0 and math.isfinite(scored["score"])
    assert failed["index"] == 1 and failed["filename"] == name and "score" not in failed
    assert failed["error"]["code"] in IMAGE_ERROR_CODES[status]
    assert name in failed["error"]["message"]
    # Alone, the image is the request: its own status and code.
    alone = client.post("/score", files=[("files", (name, data, ctype))])
    assert alone.status_code == status, alone.text
    assert _code(alone) == failed["error"]["code"]
    if ctype != "application/octet-stream":
        raw = client.post("/score", content=data, headers={"content-type": ctype})
        assert raw.status_code == status, raw.text
    assert client.get("/health/live").status_code == 200


MULTIPART_B = {"content-type": "multipart/form-data; boundary=B"}
MALFORMED = {
    "no-type": (b"abc", {}, 415, "unsupported_media_type"),
    "no-boundary": (b"abc", {"content-type": "multipart/form-data"}, 400, "bad_multipart"),
    "garbage": (b"garbage", MULTIPART_B, 400, "bad_multipart"),
    "no-parts": (b"--B--\r\n", MULTIPART_B, 400, "no_images"),
    "unterminated": (
        b"--B\r\nContent-Disposition: form-data; name=files\r\n\r\nxx",
        MULTIPART_B,
        400,
        "bad_multipart",
    ),
    "huge-header": (
        b"--B\r\n" + b"X" * 10_000 + b"\r\n\r\n--B--\r\n",
        MULTIPART_B,
        400,
        "bad_multipart",
    ),
    "empty-raw": (b"", {"content-type": "image/png"}, 400, "empty_upload"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_bodies(client: httpx.Client, case: str) -> None:
    body, headers, status, code = MALFORMED[case]
    response = client.post("/score", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert _code(response) == code


def test_part_problems(client: httpx.Client) -> None:
    png = image_bytes(noise_image(1))
    body, headers = _multipart([_part(png), _part(b"", filename="b.png")])
    empty = client.post("/score", content=body, headers=headers)
    assert empty.status_code == 200, empty.text
    assert empty.json()["results"][1]["error"]["code"] == "empty_upload"
    body, headers = _multipart([_part(b"", filename="b.png")])
    alone = client.post("/score", content=body, headers=headers)
    assert alone.status_code == 400 and _code(alone) == "empty_upload"
    body, headers = _multipart([_part(png, name="file")])
    misnamed = client.post("/score", content=body, headers=headers)
    assert misnamed.status_code == 400 and _code(misnamed) == "unexpected_field"
    body, headers = _multipart([_part(png, ctype="text/html")])
    html = client.post("/score", content=body, headers=headers)
    assert html.status_code == 415 and _code(html) == "unsupported_media_type"


def test_thousands_of_parts_get_413(client: httpx.Client) -> None:
    body, headers = _multipart([_part(b"x")] * 5000)
    response = client.post("/score", content=body, headers=headers)
    assert response.status_code == 413 and _code(response) == "too_many_images"


def test_thousands_of_form_fields_get_413_naming_them(client: httpx.Client) -> None:
    field = b'Content-Disposition: form-data; name="note"\r\n\r\nhello'
    body, headers = _multipart([field] * 5000)
    response = client.post("/score", content=body, headers=headers)
    assert response.status_code == 413 and _code(response) == "too_many_parts"
    assert "too many form fields" in response.json()["error"]["message"]


@pytest.fixture(scope="module")
def small_limits(model_repo: ModelRepo) -> Iterator[LiveServer]:
    from tests.support.servers import running_server

    settings = make_settings(
        model_repo.path, max_body_bytes=64 * 1024, max_images=3, max_queue=8, max_pixels=10_000
    )
    with running_server(settings) as live:
        yield live


def test_body_over_the_limit_by_content_length(small_limits: LiveServer) -> None:
    with small_limits.client() as client:
        response = client.post(
            "/score", content=b"\0" * (100 * 1024), headers={"content-type": "image/png"}
        )
        assert response.status_code == 413 and _code(response) == "body_too_large"
        assert client.get("/health/live").status_code == 200
        text = client.get("/metrics").text
    assert metric_value(text, "deepsvdd_rejected_requests_total", reason="body_too_large") >= 1
    assert (
        metric_value(
            text,
            "deepsvdd_request_duration_seconds_count",
            route="/score",
            method="POST",
            status="4xx",
        )
        >= 1
    )


def test_a_body_far_over_the_limit_still_gets_its_answer(small_limits: LiveServer) -> None:
    with small_limits.client() as client:
        response = client.post(
            "/score", content=b"\0" * (4 * 1024 * 1024), headers={"content-type": "image/png"}
        )
        assert response.status_code == 413 and _code(response) == "body_too_large"


def test_body_over_the_limit_while_streaming(small_limits: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"\0" * 4096  # 256 KiB, chunked: no Content-Length to check up front

    with small_limits.client() as client:
        response = client.post("/score", content=chunks(), headers={"content-type": "image/png"})
        assert "content-length" not in response.request.headers
        assert response.status_code == 413 and _code(response) == "body_too_large"
        big_part = [("files", ("big.png", b"\0" * (200 * 1024), "image/png"))]
        assert client.post("/score", files=big_part).status_code == 413


def test_too_many_images_and_pixels(small_limits: LiveServer) -> None:
    png = image_bytes(noise_image(1))
    with small_limits.client() as client:
        files = [("files", (f"{i}.png", png, "image/png")) for i in range(4)]
        response = client.post("/score", files=files)
        assert response.status_code == 413 and _code(response) == "too_many_images"
        assert client.post("/score", files=files[:3]).status_code == 200
        large = image_bytes(noise_image(2, (101, 100)))
        response = client.post("/score", content=large, headers={"content-type": "image/png"})
        assert response.status_code == 413 and _code(response) == "too_many_pixels"
        text = client.get("/metrics").text
    for reason in ("too_many_images", "too_many_pixels"):
        assert metric_value(text, "deepsvdd_rejected_requests_total", reason=reason) >= 1


def test_not_ready_until_models_are_warm(
    start_server: StartServer, model_repo: ModelRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = service.repository.load_model

    def slow_load(*args: object, **kwargs: object) -> service.repository.LoadedModel:
        release.wait(timeout=30)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service.repository, "load_model", slow_load)
    live = start_server(make_settings(model_repo.path), ready=False)
    with live.client() as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"].isdigit()
        assert _code(ready) == "not_ready"
        files = {"files": ("a.png", image_bytes(noise_image(1)), "image/png")}
        score = client.post("/score", files=files)
        assert score.status_code == 503 and _code(score) == "not_ready"
        assert score.headers["retry-after"].isdigit()
        release.set()
        wait_ready(live.url)
        assert client.post("/score", files=files).status_code == 200


def test_an_empty_repository_is_never_ready(start_server: StartServer, tmp_path: Path) -> None:
    live = start_server(make_settings(tmp_path), ready=False)
    with live.client() as client:
        while not live.app.state.service.loaded:
            time.sleep(0.01)
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and _code(ready) == "no_models"
        assert "is empty" in ready.json()["error"]["message"]
        assert "retry-after" not in ready.headers  # nothing will come of retrying
        files = {"files": ("a.png", image_bytes(noise_image(1)), "image/png")}
        score = client.post("/score", files=files)
        assert score.status_code == 503 and _code(score) == "no_models"
