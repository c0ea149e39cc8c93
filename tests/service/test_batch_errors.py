"""Issue 17, finding 7: one bad file in a batch spoils only itself; the others are scored."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from service.schemas import ScoreResponse
from tests.support.images import image_bytes, noise_image
from tests.support.metrics import metric_value
from tests.support.models import ModelRepo


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A user's folder: three good PNGs, a truncated one, a text file named .png, an empty one."""
    for seed in range(3):
        (tmp_path / f"good{seed}.png").write_bytes(image_bytes(noise_image(seed)))
    good = image_bytes(noise_image(9))
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.png").write_bytes(b"not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    return tmp_path


def _files(folder: Path, names: list[str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (n, (folder / n).read_bytes(), "image/png")) for n in names]


def _failed(text: str, reason: str) -> float:
    return metric_value(
        text, "deepsvdd_images_failed_total", model="digits", version="2", reason=reason
    )


def test_a_corrupt_file_does_not_cost_the_others_their_scores(
    client: httpx.Client, folder: Path, model_repo: ModelRepo
) -> None:
    names = ["good0.png", "cut.png", "good1.png", "notes.png", "empty.png", "good2.png"]
    before = client.get("/metrics").text
    response = client.post("/score", params={"model": "digits"}, files=_files(folder, names))
    assert response.status_code == 200, response.text
    body = response.json()
    assert ScoreResponse.model_validate(body).model_dump() == body  # the documented schema
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["filename"] for r in results] == names
    model = model_repo.model("digits", 2)
    for seed, result in zip(range(3), (results[0], results[2], results[5]), strict=True):
        assert set(result) == {"index", "filename", "score", "is_anomaly"}
        assert math.isclose(result["score"], model.reference_image(noise_image(seed)), rel_tol=1e-5)
    for result, code in zip(
        (results[1], results[3], results[4]),
        ("invalid_image", "invalid_image", "empty_upload"),
        strict=True,
    ):
        assert set(result) == {"index", "filename", "error"}
        assert result["error"]["code"] == code
        assert repr(result["filename"]) in result["error"]["message"]

    after = client.get("/metrics").text
    scored = {"model": "digits", "version": "2"}
    count = [metric_value(t, "deepsvdd_images_scored_total", **scored) for t in (before, after)]
    assert count[1] - count[0] == 3
    assert _failed(after, "invalid_image") - _failed(before, "invalid_image") == 2
    assert _failed(after, "empty_upload") - _failed(before, "empty_upload") == 1


def test_no_image_scored_is_a_400_naming_each(client: httpx.Client, folder: Path) -> None:
    before = client.get("/metrics").text
    response = client.post("/score", files=_files(folder, ["cut.png", "notes.png"]))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "no_image_scored"
    assert "none of the 2 images" in error["message"]
    assert "'cut.png'" in error["message"] and "'notes.png'" in error["message"]
    after = client.get("/metrics").text
    assert _failed(after, "invalid_image") - _failed(before, "invalid_image") == 2


def test_whole_request_limits_still_refuse_the_request(client: httpx.Client) -> None:
    # A part that is not named `files` is the request's mistake, not one image's.
    files = [("files", ("a.png", image_bytes(noise_image(1)), "image/png"))]
    files.append(("file", ("b.png", image_bytes(noise_image(2)), "image/png")))
    response = client.post("/score", files=files)
    assert response.status_code == 400 and response.json()["error"]["code"] == "unexpected_field"


def test_openapi_documents_per_image_errors(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    answers = spec["paths"]["/score"]["post"]["responses"]
    assert "error" in answers["200"]["description"]
    items = spec["components"]["schemas"]["ScoreResponse"]["properties"]["results"]["items"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in items["anyOf"]} == {
        "ExplainedScore",
        "ImageScore",
        "ImageFailure",
    }
    failure = spec["components"]["schemas"]["ImageFailure"]
    assert set(failure["required"]) == {"index", "filename", "error"}


def test_maps_go_to_the_images_that_scored_when_another_fails(
    client: httpx.Client, folder: Path
) -> None:
    names = ["good0.png", "cut.png", "good1.png"]
    response = client.post(
        "/score", params={"model": "digits", "explain": "true"}, files=_files(folder, names)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert ScoreResponse.model_validate(body).model_dump() == body
    good, bad, other = body["results"]
    assert [r["filename"] for r in body["results"]] == names
    assert set(bad) == {"index", "filename", "error"}
    for result in (good, other):
        anomaly_map = result["anomaly_map"]
        assert len(anomaly_map["values"]) == anomaly_map["width"] * anomaly_map["height"] > 0
    # Each scored image keeps its own map: two different images, two different maps.
    assert good["anomaly_map"]["values"] != other["anomaly_map"]["values"]
