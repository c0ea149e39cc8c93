"""Fuzzing: the service's own OpenAPI schema through schemathesis, and hostile bytes and
mutated valid images (bit flips, truncations of every accepted format) through the
decoder and POST /score. Client input never gets a 5xx; every error is the SPEC's JSON.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from modelfile.metadata import InputSpec
from service.decoding import decode_image
from service.errors import ApiError
from tests.support.http import CLIENT_STATUSES, LEAKS, check_error
from tests.support.images import noise_image
from tests.support.models import ModelRepo
from tests.support.servers import ADMIN_TOKEN, LiveServer, make_settings, running_server

GREY = InputSpec(channels=1, height=28, width=28, color="L")
MAX_PIXELS = 1_000_000
FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def live(shared_repo: ModelRepo) -> Iterator[LiveServer]:
    settings_ = make_settings(
        shared_repo.path, admin_token=ADMIN_TOKEN, max_body_bytes=1 << 20, max_pixels=MAX_PIXELS
    )
    with running_server(settings_) as server:
        yield server


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client


def _operations(live: LiveServer) -> list[Any]:
    raw = httpx.get(f"{live.url}/openapi.json").json()
    results = list(schemathesis.openapi.from_dict(raw).get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results  # the schema is valid
    return [result.ok() for result in results if isinstance(result, Ok)]


def _check(response: Any, repo: ModelRepo, what: str, protocol: bool = False) -> None:
    """No 5xx; a 4xx in the SPEC's error form (`protocol`: the Open Inference Protocol's)."""
    status = response.status_code
    assert status < 500, f"{what}: {status} {response.text[:300]}"
    if status >= 400:
        assert status in CLIENT_STATUSES, f"{what}: {status}"
        if protocol:
            _check_protocol_error(response.text, repo)
        else:
            check_error(httpx.Response(status, content=response.content), repo.path)


def _check_protocol_error(text: str, repo: ModelRepo) -> None:
    """The Open Inference Protocol's form, `{"error": "<message>"}`, naming no internals."""
    body = json.loads(text)
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    for needle in (*LEAKS, str(repo.path)):
        assert needle not in text, f"{needle!r} in {text!r}"


def _fuzz_operation(
    operation: Any, mode: GenerationMode, live: LiveServer, repo: ModelRepo
) -> None:
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        response = case.call(base_url=live.url, timeout=30)
        what = f"{operation.label} {case.query} {case.path_parameters}"
        _check(response, repo, what, protocol=operation.path.startswith("/v2"))

    fuzz()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schema_fuzzing_never_gets_a_server_error(
    live: LiveServer, shared_repo: ModelRepo, mode: GenerationMode
) -> None:
    operations = _operations(live)
    labels = {op.label for op in operations}
    assert {"POST /score", "GET /models/{name}", "POST /admin/reload"} <= labels
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not len(operation.query) + len(operation.body):
            continue  # a string path parameter or a bare header cannot be made invalid
        _fuzz_operation(operation, mode, live, shared_repo)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes_decode_or_get_a_client_error(data: bytes) -> None:
    _decode(data)


def _decode(data: bytes) -> None:
    try:
        pixels = decode_image(data, "fuzz", GREY, MAX_PIXELS)
    except ApiError as exc:
        assert exc.status in (400, 413), exc.status
        assert "Traceback" not in exc.message and "/" not in exc.message.split(":", 1)[0]
        return
    assert pixels.shape == (1, 28, 28) and pixels.dtype == np.float32
    assert np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0


def _encoded(fmt: str) -> bytes:
    image = noise_image(30, (40, 30), "RGB")
    out = io.BytesIO()
    if fmt == "GIF":
        frames = [image.convert("P"), noise_image(31, (40, 30), "RGB").convert("P")]
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    else:
        image.save(out, format=fmt)
    return out.getvalue()


SAMPLES = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "GIF", "TIFF", "WEBP", "BMP", "PPM")}
MEDIA = {"PNG": "png", "JPEG": "jpeg", "GIF": "gif", "TIFF": "tiff", "WEBP": "webp", "BMP": "bmp"}
MEDIA["PPM"] = "x-portable-pixmap"


@st.composite
def mutated(draw: st.DrawFn, fmt: str) -> bytes:
    """The format's sample with a few bit flips, then perhaps truncated."""
    data = bytearray(SAMPLES[fmt])
    flips = draw(st.lists(st.integers(0, len(data) * 8 - 1), max_size=8))
    for bit in flips:
        data[bit // 8] ^= 1 << (bit % 8)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_mutated_images_decode_or_get_a_client_error(fmt: str) -> None:
    Image.open(io.BytesIO(SAMPLES[fmt])).verify()  # the unmutated sample is valid

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(data=mutated(fmt))
    def fuzz(data: bytes) -> None:
        _decode(data)

    fuzz()


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_mutated_images_over_http(http: httpx.Client, shared_repo: ModelRepo, fmt: str) -> None:
    media = f"image/{MEDIA[fmt]}"

    @FUZZ
    @given(data=mutated(fmt), multipart=st.booleans())
    def fuzz(data: bytes, multipart: bool) -> None:
        if multipart:
            response = http.post("/score", files=[("files", ("m", data, media))])
        else:
            response = http.post("/score", content=data, headers={"content-type": media})
        _check(response, shared_repo, fmt)
        if response.status_code == 200:
            assert response.json()["results"][0]["index"] == 0

    fuzz()


DISPOSITIONS = ['name="files"', 'name="other"', "", 'name="files"; filename="x.png"']
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"))


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A Content-Type and body: a mangled multipart upload, or junk under any media type."""
    if draw(st.booleans()):
        boundary = draw(HEADER_TEXT.filter(lambda b: b.strip() != "").map(lambda b: b[:70]))
        part = draw(st.sampled_from(sorted(SAMPLES.values())))
        disposition = draw(st.sampled_from(DISPOSITIONS))
        body = (
            (
                f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n"
                f"Content-Type: {draw(HEADER_TEXT.map(lambda t: t[:40]))}\r\n\r\n"
            ).encode("latin-1")
            + part
            + f"\r\n--{boundary}--\r\n".encode("latin-1")
        )
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        return f"multipart/form-data; boundary={boundary}", body
    return draw(HEADER_TEXT.map(lambda t: t[:100])), draw(st.binary(max_size=2048))


@FUZZ
@given(request=multipart_bodies())
def test_mangled_content_types_and_multipart_bodies(
    http: httpx.Client, shared_repo: ModelRepo, request: tuple[str, bytes]
) -> None:
    content_type, body = request
    # Header bytes as sent; HTTP itself (the client here) forbids blanks at either end.
    headers = {b"content-type": content_type.strip(" \t").encode("latin-1")}
    response = http.post("/score", content=body, headers=headers)
    _check(response, shared_repo, content_type)
