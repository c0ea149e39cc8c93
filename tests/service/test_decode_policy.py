"""A model's decode policy travels with it: a model made before the policy (no `decode` in its
metadata) is served exactly as before, a "reduced" model has its JPEGs DCT-scaled by the
service and `deepsvdd score` alike, and a broken JPEG stays one image's error."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from PIL import Image

from modelfile.imaging import load_for_model
from modelfile.layout import open_model
from modelfile.metadata import METADATA_KEY, DecodePolicy, InputSpec
from service.decoding import decode_pixels
from service.errors import ApiError
from service.offline.score import OfflineSettings, load, score_bytes
from tests.support.models import TinyModel, build_model
from tests.support.photos import encoded, photograph
from tests.support.servers import LiveServer, make_settings, running_server
from training.data import load_dataset

RGB = InputSpec(channels=3, height=32, width=32, color="RGB")
# ONNX Runtime's float32 scores are within 1e-6 of the float64 reference; full and reduced
# pixels of these photographs move the tiny models' scores by 1e-4 or more.
RTOL = 1e-5


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    root = tmp_path_factory.mktemp("models")
    return {
        "old": build_model(root, "old", 1, channels=3, seed=4),
        "new": build_model(
            root, "new", 1, channels=3, seed=5, meta_overrides={"decode": "reduced"}
        ),
    }


@pytest.fixture(scope="module")
def live(models: dict[str, TinyModel]) -> Iterator[LiveServer]:
    with running_server(make_settings(models["old"].path.parents[2])) as server:
        yield server


def photographs() -> dict[str, bytes]:
    """JPEGs of 320 x 224 photographs (1/2 of the size is the smallest still twice 32 x 32
    once turned), upright and turned a quarter, and a PNG."""
    out = {}
    for name in ("astronaut.png", "coffee.png", "rocket.jpg"):
        rgb = photograph(name, (320, 224))
        out[f"{name}-1.jpg"] = encoded(rgb, "JPEG", 1, quality=90)
        out[f"{name}-6.jpg"] = encoded(rgb, "JPEG", 6, quality=90)
        out[f"{name}.png"] = encoded(rgb, "PNG")
    return out


def broken_jpegs() -> dict[str, bytes]:
    """A truncated JPEG, one whose scan names Huffman tables it never defines (Pillow opens it;
    libjpeg fails decoding it) and a progressive one, which decodes."""
    jpeg = encoded(photograph("chelsea.png"), "JPEG", quality=90)
    corrupt = bytearray(jpeg)
    corrupt[corrupt.find(b"\xff\xda") + 6] = 0x33
    return {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "corrupt.jpg": bytes(corrupt),
        "progressive.jpg": encoded(photograph("chelsea.png"), "JPEG", progressive=True),
    }


def pixels(files: dict[str, bytes], policy: DecodePolicy) -> np.ndarray:
    return np.stack(
        [load_for_model(Image.open(io.BytesIO(d)), "RGB", 32, 32, policy) for d in files.values()]
    )


def post(live: LiveServer, model: str, files: dict[str, bytes]) -> list[dict[str, Any]]:
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files.items()]
    with live.client() as client:
        answer = client.post("/score", params={"model": model}, files=parts)
    assert answer.status_code == 200, answer.text
    results: list[dict[str, object]] = answer.json()["results"]
    return results


def test_a_model_without_the_field_is_served_as_before(
    models: dict[str, TinyModel], live: LiveServer
) -> None:
    old = models["old"]
    stored = json.loads(onnx.load(str(old.path)).metadata_props[0].value)
    assert onnx.load(str(old.path)).metadata_props[0].key == METADATA_KEY
    assert "decode" not in stored and open_model(old.path)[1].decode == "full"
    files = photographs()
    today = [old.reference_image(Image.open(io.BytesIO(d))) for d in files.values()]
    scores = [r["score"] for r in post(live, "old", files)]
    np.testing.assert_allclose(scores, today, rtol=RTOL)
    offline = load(old.path, OfflineSettings(), threads=1)
    offline_scores = [s for s, _ in score_bytes(offline, list(files.items()), 10**6)]
    np.testing.assert_allclose(np.array(offline_scores, dtype=float), today, rtol=RTOL)


def test_a_reduced_model_gets_reduced_jpegs_from_the_service_and_offline(
    models: dict[str, TinyModel], live: LiveServer
) -> None:
    new = models["new"]
    files = photographs()
    reduced = new.reference(pixels(files, "reduced"))
    full = new.reference(pixels(files, "full"))
    jpeg = np.array([name.endswith(".jpg") for name in files])
    assert np.all(np.abs(reduced - full)[jpeg] > 5 * RTOL * full[jpeg])  # the policy shows
    np.testing.assert_array_equal(reduced[~jpeg], full[~jpeg])
    np.testing.assert_allclose([r["score"] for r in post(live, "new", files)], reduced, rtol=RTOL)
    offline = load(new.path, OfflineSettings(), threads=1)
    scored = score_bytes(offline, list(files.items()), 10**6)
    np.testing.assert_allclose(np.array([s for s, _ in scored], dtype=float), reduced, rtol=RTOL)


@pytest.mark.parametrize("name", ["truncated.jpg", "corrupt.jpg", "progressive.jpg"])
def test_broken_and_progressive_jpegs_keep_todays_outcome_when_reduced(
    name: str, models: dict[str, TinyModel], live: LiveServer, tmp_path: Path
) -> None:
    data = broken_jpegs()[name]
    decodes = name == "progressive.jpg"
    outcomes: dict[str, np.ndarray | str] = {}
    for policy in ("full", "reduced"):
        try:
            outcomes[policy] = decode_pixels(data, "x", RGB, 10**6, policy)
        except ApiError as exc:
            assert exc.status == 400 and exc.code == "invalid_image"
            outcomes[policy] = str(exc)
    assert isinstance(outcomes["reduced"], np.ndarray) == decodes
    if not decodes:
        assert outcomes["reduced"] == outcomes["full"]  # the same message
    upload = {"good.png": encoded(photograph("coffee.png"), "PNG"), name: data}
    served = post(live, "new", upload)
    assert ("score" in served[1]) == decodes and "score" in served[0]
    offline = load(models["new"].path, OfflineSettings(), threads=1)
    assert [error is None for _, error in score_bytes(offline, list(upload.items()), 10**6)] == [
        True,
        decodes,
    ]
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        (tmp_path / split / "a" / "good.png").write_bytes(upload["good.png"])
    (tmp_path / "train" / "a" / name).write_bytes(data)
    folder = load_dataset("folder", tmp_path, image_size=32, channels=3, decode="reduced")
    assert len(folder.skipped) == (0 if decodes else 1)
    if decodes:
        assert isinstance(outcomes["reduced"], np.ndarray)
        np.testing.assert_array_equal(np.asarray(folder.x_train)[1], outcomes["reduced"])
