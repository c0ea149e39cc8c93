"""Anomaly maps: the grid, the answer's shape and limits, and maps that find a planted defect."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.explain import COST, GRID, PATCHES, Grid, explain_answers, explain_batch
from service.schemas import ScoreResponse
from tests.conftest import FASHION_DIR, read_idx
from tests.support.images import image_bytes, noise_image
from tests.support.models import build_model
from tests.support.servers import LiveServer, make_settings, running_server

ROOT = Path(__file__).resolve().parents[2]
CLASSES: tuple[str, ...] = ("t-shirt-top", "trouser", "pullover", "dress", "coat")
CLASSES += ("sandal", "shirt", "sneaker", "bag", "ankle-boot")
SQUARE = 6


def test_grid_covers_every_pixel_with_13_by_13_patches() -> None:
    for height, width in ((28, 28), (32, 32), (5, 200)):
        grid = Grid.of(height, width)
        assert len(grid.boxes()) == PATCHES == GRID * GRID
        covered = np.zeros((height, width), bool)
        for r, c in grid.boxes():
            covered[r : r + grid.patch_h, c : c + grid.patch_w] = True
        assert covered.all()
        assert grid.patch_h == -(-height // 7) and grid.rows[-1] + grid.patch_h == height


def test_occluding_the_only_contributing_patch_puts_the_map_there() -> None:
    """A model whose score is the ink in one corner: the map is hot there and nowhere else."""
    images = np.zeros((1, 1, 28, 28), np.float32)
    images[0, 0, :4, :4] = 1.0
    batch, grid = explain_batch(images)
    assert batch.shape == (COST, 1, 28, 28)
    scores = batch[:, 0, :4, :4].sum(axis=(1, 2)).astype(np.float64)
    base, maps = explain_answers(images, scores, grid)
    assert base[0] == 16.0
    values = np.array(maps[0]["values"]).reshape(28, 28)
    assert values[:4, :4].min() > 0 and values[8:, 8:].max() == 0


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("models")
    build_model(models, "tiny", 1)
    with running_server(make_settings(models, max_explain_images=2)) as live:
        yield live


def test_explain_adds_a_map_to_every_result(tiny_server: LiveServer) -> None:
    files = [("files", (f"{i}.png", image_bytes(noise_image(i)), "image/png")) for i in range(2)]
    with tiny_server.client() as client:
        plain = client.post("/score", files=files).json()
        answer = client.post("/score", params={"explain": "true"}, files=files)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert ScoreResponse.model_validate(body).model_dump() == body  # the documented schema
    for result, before in zip(body["results"], plain["results"], strict=True):
        assert result["score"] == pytest.approx(before["score"], rel=1e-5)
        amap = result["anomaly_map"]
        assert (amap["width"], amap["height"]) == (28, 28) and len(amap["values"]) == 28 * 28
        assert min(amap["values"]) >= 0.0
        picture = Image.open(io.BytesIO(base64.b64decode(amap["png"])))
        assert picture.format == "PNG" and picture.mode == "RGB" and picture.width >= 28
    assert "anomaly_map" not in plain["results"][0]


def test_explain_is_bounded_per_request(tiny_server: LiveServer) -> None:
    files = [("files", (f"{i}.png", image_bytes(noise_image(i)), "image/png")) for i in range(3)]
    with tiny_server.client() as client:
        refused = client.post("/score", params={"explain": "true"}, files=files)
        plain = client.post("/score", files=files)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "too_many_images"
    assert "explain" in refused.json()["error"]["message"]
    assert plain.status_code == 200


def _plant(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """A white square where the image is darkest among random spots: a defect off the item."""
    spots = rng.integers(0, 28 - SQUARE + 1, (50, 2))
    r, c = min(spots, key=lambda rc: image[rc[0] : rc[0] + SQUARE, rc[1] : rc[1] + SQUARE].sum())
    planted = image.copy()
    planted[r : r + SQUARE, c : c + SQUARE] = 255
    return planted, int(r), int(c)


@pytest.mark.slow
def test_shipped_models_point_at_a_planted_square() -> None:
    x = read_idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")
    y = read_idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(0)
    hits = total = 0
    settings = make_settings(ROOT / "models", max_explain_images=4)
    with running_server(settings) as live, live.client() as client:
        for index, name in enumerate(CLASSES):
            normal = x[y == index][:8]
            for start in range(0, len(normal), 4):
                planted = [_plant(img, rng) for img in normal[start : start + 4]]
                files = [
                    ("files", (f"{i}.png", image_bytes(Image.fromarray(p)), "image/png"))
                    for i, (p, _, _) in enumerate(planted)
                ]
                answer = client.post(
                    "/score",
                    params={"model": f"fashion-mnist-{name}", "explain": "true"},
                    files=files,
                )
                assert answer.status_code == 200, answer.text
                for result, (_, r, c) in zip(answer.json()["results"], planted, strict=True):
                    values = np.array(result["anomaly_map"]["values"]).reshape(28, 28)
                    hot_r, hot_c = np.unravel_index(values.argmax(), values.shape)
                    hits += int(r <= hot_r < r + SQUARE and c <= hot_c < c + SQUARE)
                    total += 1
    # Measured 89% (178 of 200) with 20 images a class; a 6x6 square is 4.6% of the image.
    assert hits / total >= 0.75, f"the hottest pixel lay on the square for {hits} of {total}"


def test_the_queue_bounds_explain_too(tmp_path: Path) -> None:
    """With room for 300 queued images, only one map (170 inferences) fits in a request."""
    build_model(tmp_path, "tiny", 1)
    files = [("files", (f"{i}.png", image_bytes(noise_image(i)), "image/png")) for i in range(2)]
    with running_server(make_settings(tmp_path, max_queue=300)) as live, live.client() as client:
        refused = client.post("/score", params={"explain": "true"}, files=files)
        one = client.post("/score", params={"explain": "true"}, files=files[:1])
    assert refused.status_code == 413 and "limit of 1" in refused.json()["error"]["message"]
    assert one.status_code == 200 and "anomaly_map" in one.json()["results"][0]
