"""The page at `/` with a patch model, in headless Chromium: it says the maps come from the
model's own grid in the same inference, sends every upload in one request, and draws the map
`/score?explain=true` serves; with a whole-image model, occlusion, one request an image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import chromium
from tests.support.images import noise_image
from tests.support.patch_models import HEIGHT, WIDTH
from tests.support.servers import LiveServer, make_settings, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(patch_repo: Path) -> Iterator[LiveServer]:
    with running_server(make_settings(patch_repo)) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def uploads(folder: Path, size: tuple[int, int], count: int) -> list[Path]:
    files = []
    for i in range(count):
        path = folder / f"upload-{i}.png"
        noise_image(i, size, "L").save(path)
        files.append(path)
    return files


def test_the_page_draws_a_patch_models_map_from_one_request(
    live: LiveServer, browser: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    files = uploads(tmp_path, (WIDTH, HEIGHT), 3)
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(live.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#model", "patches/1")
    assert "patch" in page.locator("#model-info").inner_text()
    assert page.locator("#explain-how").inner_text() == (
        "the model's own 12x8 patch grid, in the same inference"
    )
    page.set_input_files("#files", [str(p) for p in files])
    expect(page.locator("#results img.map")).to_have_count(3)
    assert sum("/score" in url for url in requests) == 1
    drawn = [img.get_attribute("src") for img in page.locator("#results img.map").all()]
    with live.client() as client:
        parts = [("files", (p.name, p.read_bytes(), "image/png")) for p in files]
        answer = client.post("/score", params={"model": "patches", "explain": "true"}, files=parts)
    served = [f"data:image/png;base64,{r['anomaly_map']['png']}" for r in answer.json()["results"]]
    assert drawn == served
    page.close()


def test_a_whole_image_model_keeps_one_request_an_image(
    live: LiveServer, browser: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(live.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#model", "digits/1")
    assert "occlusion" in page.locator("#explain-how").inner_text()
    page.set_input_files("#files", [str(p) for p in uploads(tmp_path, (28, 28), 2)])
    expect(page.locator("#results img.map")).to_have_count(2)
    assert sum("/score" in url for url in requests) == 2
    page.close()
