"""The multipart reader on its own: what clients really send, and bodies that break the rules.

Bodies from httpx's own encoder are read back part for part; hypothesis checks that any list
of parts (binary data holding CRLFs and dashes, any file name) survives the round trip.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ApiError
from service.uploads import MAX_PART_HEADER_BYTES, split_multipart

BOUNDARY = b"0a1b2c3d4e5f"


def _httpx_body(files: list[tuple[str, bytes, str]]) -> tuple[bytes, bytes]:
    request = httpx.Request(
        "POST", "http://x/score", files=[("files", (n, d, t)) for n, d, t in files]
    )
    ctype = request.headers["content-type"]
    boundary = ctype.split("boundary=", 1)[1].encode()
    return request.read(), boundary


def _body(parts: list[bytes], preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    b = BOUNDARY.decode()
    out = preamble + (b"\r\n" if preamble else b"")
    for part in parts:
        out += f"--{b}\r\n".encode() + part + b"\r\n"
    return out + f"--{b}--".encode() + epilogue


def _part(data: bytes, disposition: str = 'form-data; name="files"; filename="a.png"') -> bytes:
    return f"Content-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n".encode() + data


def _error(body: bytes, max_images: int = 100) -> tuple[int, str, str]:
    with pytest.raises(ApiError) as info:
        split_multipart(body, BOUNDARY, max_images)
    return info.value.status, info.value.code, info.value.message


def test_reads_what_httpx_sends() -> None:
    files = [
        ("a.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "image/png"),
        ("b c.jpg", b"\r\n--not-the-boundary\r\n", "image/jpeg"),
        ("\u00e9t\u00e9.png", b"x", "application/octet-stream"),
    ]
    body, boundary = _httpx_body(files)
    uploads = split_multipart(body, boundary, 10)
    assert [(u.index, u.filename, u.data) for u in uploads] == [
        (i, name, data) for i, (name, data, _) in enumerate(files)
    ]


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
            st.binary(min_size=1, max_size=200).map(lambda b: b.replace(b"\r\n--", b"\r\n-")),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_round_trip_of_any_parts(parts: list[tuple[str, bytes]]) -> None:
    body, boundary = _httpx_body([(name, data, "image/png") for name, data in parts])
    uploads = split_multipart(body, boundary, 10)
    assert [u.data for u in uploads] == [data for _, data in parts]
    assert len(uploads) == len(parts)


def test_preamble_epilogue_and_padding() -> None:
    body = _body([_part(b"one"), _part(b"two")], preamble=b"ignored", epilogue=b"\r\nignored")
    body = body.replace(BOUNDARY + b"\r\nContent", BOUNDARY + b" \t\r\nContent", 1)
    assert [u.data for u in split_multipart(body, BOUNDARY, 10)] == [b"one", b"two"]


def test_a_part_without_headers_has_no_field_name() -> None:
    _, code, message = _error(_body([b"\r\nbare"]))
    assert code == "unexpected_field" and "without a form-data name" in message


def test_boundary_text_inside_data_is_data() -> None:
    data = b"\r\n--" + BOUNDARY + b"x and more"
    uploads = split_multipart(_body([_part(data)]), BOUNDARY, 10)
    assert uploads[0].data == data


@pytest.mark.parametrize(
    ("disposition", "filename"),
    [
        ('form-data; name="files"', None),
        ("form-data; name=files; filename=plain.png", "plain.png"),
        ('FORM-DATA;name="files";filename="a.png"', "a.png"),
        ('form-data; name="files"; filename="say \\"hi\\".png"', 'say "hi".png'),
        ('form-data; name="files"; filename="C:\\\\dir\\\\x.png"', "x.png"),
        ('form-data; name="files"; filename="' + "n" * 400 + '"', "n" * 255),
    ],
)
def test_dispositions(disposition: str, filename: str | None) -> None:
    uploads = split_multipart(_body([_part(b"x", disposition)]), BOUNDARY, 10)
    assert uploads[0].filename == filename


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"no boundary here", "bad_multipart", "does not occur"),
        (b"--" + BOUNDARY + b"junk\r\n", "bad_multipart", "line break"),
        (b"--" + BOUNDARY + b"\r\nContent-Type: image/png", "bad_multipart", "inside the headers"),
        (b"--" + BOUNDARY + b"\r\n" + _part(b"data"), "bad_multipart", "ends inside a part"),
        (_body([b"Bad header\r\n\r\nx"]), "bad_multipart", "Name: value"),
        (_body([b" Folded: x\r\n\r\nx"]), "bad_multipart", "Name: value"),
        (_body([b"X: " + b"y" * MAX_PART_HEADER_BYTES + b"\r\n\r\nx"]), "bad_multipart", "over"),
        (b"--" + BOUNDARY + b"--", "no_images", "no 'files'"),
        (_body([_part(b"x", 'form-data; name="file"')]), "unexpected_field", "'file'"),
        (_body([_part(b"x", 'attachment; name="files"')]), "unexpected_field", "without"),
    ],
)
def test_malformed(body: bytes, code: str, words: str) -> None:
    _, got, message = _error(body)
    assert got == code
    assert words in message


@pytest.mark.parametrize(
    ("part", "status", "code"),
    [
        (_part(b""), 400, "empty_upload"),
        (_part(b"x").replace(b"image/png", b"text/html"), 415, "unsupported_media_type"),
    ],
)
def test_an_unusable_part_carries_its_own_error(part: bytes, status: int, code: str) -> None:
    good, bad = split_multipart(_body([_part(b"data"), part]), BOUNDARY, 10)
    assert good.error is None and good.data == b"data"
    assert bad.error is not None and (bad.error.status, bad.error.code) == (status, code)
    assert "'a.png' (image 1)" in bad.error.message


def test_part_count_limit() -> None:
    status, code, _ = _error(_body([_part(b"x")] * 4), max_images=3)
    assert (status, code) == (413, "too_many_images")
    assert len(split_multipart(_body([_part(b"x")] * 3), BOUNDARY, 3)) == 3
