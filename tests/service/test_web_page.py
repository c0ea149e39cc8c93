"""The page at `/`, end to end in headless Chromium (Debian's, driven by Playwright): it lists
the models, scores uploads as `/score` does, shows maps, and redraws decisions locally."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import chromium
from tests.support.images import image_bytes, noise_image
from tests.support.models import TinyModel, build_model
from tests.support.servers import LiveServer, make_settings, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    models = tmp_path_factory.mktemp("models")
    model = build_model(models, "tiny", 1)
    (models / "tiny" / "tiny-roc.png").write_bytes(image_bytes(noise_image(99, (60, 40), "RGB")))
    return model


@pytest.fixture(scope="module")
def live(tiny: TinyModel) -> Iterator[LiveServer]:
    with running_server(make_settings(tiny.path.parents[2])) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def test_the_static_files_are_served_with_a_strict_policy(live: LiveServer) -> None:
    with live.client() as client:
        page = client.get("/")
        script = client.get("/ui/app.js")
        missing = client.get("/ui/../settings.py")
        other = client.get("/ui/nosuch.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert missing.status_code == 404 and other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"
    assert "http" not in page.text.replace(live.url, "")  # no CDN, nothing from outside


def test_figures_beside_a_model_are_listed_and_served(live: LiveServer) -> None:
    with live.client() as client:
        listing = client.get("/ui/figures/tiny").json()
        png = client.get(listing["figures"][0]["url"])
        unknown = client.get("/ui/figures/nosuch")
        outside = client.get("/ui/figures/tiny/model.onnx")
    assert [f["name"] for f in listing["figures"]] == ["tiny-roc.png"]
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert unknown.status_code == 404 and outside.status_code == 404


def test_upload_score_map_and_threshold_in_chromium(
    live: LiveServer, tiny: TinyModel, browser: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    files = []
    for i in range(3):
        path = tmp_path / f"upload-{i}.png"
        noise_image(i).save(path)
        files.append(path)
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"plain text")
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(live.url + "/")
    page.wait_for_selector("#model option", state="attached")
    assert page.locator("#model").input_value() == "tiny/1"
    assert "0.9000" in page.locator("#model-info").inner_text()  # the AUC
    page.wait_for_selector("#figures img")

    unlabeled = page.evaluate(
        "[...document.querySelectorAll('input, select')]"
        ".filter(e => !e.labels || e.labels.length === 0).map(e => e.id)"
    )
    assert unlabeled == []
    page.focus("body")
    reached = set()
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id"))
    assert {"model", "files", "explain", "threshold", "threshold-number"} <= reached

    page.set_input_files("#files", [*map(str, files), str(bad)])
    expect(page.locator("#results tbody tr")).to_have_count(4)
    expect(page.locator("#results td.error")).to_have_count(1)
    shown = [
        (float(cell.get_attribute("data-score") or "nan"), float(cell.inner_text()))
        for cell in page.locator("#results td.score").all()
    ]
    assert "invalid_image" in page.locator("#results td.error").inner_text()
    assert page.locator("#results img.map").count() == 3

    with live.client() as client:
        parts = [("files", (p.name, p.read_bytes(), "image/png")) for p in files]
        expected = [r["score"] for r in client.post("/score", files=parts).json()["results"]]
    assert [full for full, _ in shown] == expected
    assert [text for _, text in shown] == pytest.approx(expected, rel=1e-5)

    scored = sum("/score" in url for url in requests)
    decisions = page.locator("#results td.decision")
    page.focus("#threshold")
    page.keyboard.press("Home")
    low = min(tiny.thresholds.values())
    assert decisions.all_inner_texts() == ["anomaly" if s > low else "normal" for s in expected]
    page.keyboard.press("End")
    high = max(tiny.thresholds.values())
    assert decisions.all_inner_texts() == ["anomaly" if s > high else "normal" for s in expected]
    page.fill("#threshold-number", "0")
    page.keyboard.press("Enter")
    page.locator("#threshold-number").blur()
    assert decisions.all_inner_texts() == ["anomaly"] * 3
    assert sum("/score" in url for url in requests) == scored  # no second upload
    assert all(url.startswith((live.url, "data:", "blob:")) for url in requests), (
        f"the page fetched from elsewhere: {requests}"
    )
    page.close()


def test_the_shipped_page_files_exist_in_the_package() -> None:
    static = Path(__file__).resolve().parents[2] / "service" / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "app.js", "style.css"}


def test_an_image_dropped_on_the_page_is_scored(live: LiveServer, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    png = image_bytes(noise_image(7))
    page = browser.new_page()
    page.goto(live.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.uncheck("#explain")
    dropped = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            return transfer;
        }""",
        base64.b64encode(png).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    expect(page.locator("#results td.score")).to_have_count(1)
    with live.client() as client:
        files = [("files", ("dropped.png", png, "image/png"))]
        expected = client.post("/score", files=files).json()["results"][0]["score"]
    assert float(page.locator("#results td.score").get_attribute("data-score") or "nan") == expected
    assert page.locator("#results img.map").count() == 0  # maps were switched off
    assert "dropped.png" in page.locator("#results").inner_text()
    page.close()


# Collects the page's layout shifts (the Layout Instability API), from the first paint on.
LAYOUT_SHIFTS = """
window.__cls = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (!entry.hadRecentInput) window.__cls += entry.value;
  }
}).observe({ type: "layout-shift", buffered: true });
"""
MODELS_DELAY_S = 0.8


def test_the_page_does_not_shift_when_the_models_arrive(live: LiveServer, browser: object) -> None:
    from playwright.sync_api import Browser, Response, Route

    assert isinstance(browser, Browser)
    # A phone's viewport, as Lighthouse's mobile run; /models arrives late, after first paint.
    context = browser.new_context(viewport={"width": 412, "height": 823}, device_scale_factor=2)
    page = context.new_page()
    page.add_init_script(LAYOUT_SHIFTS)

    def late(route: Route) -> None:
        time.sleep(MODELS_DELAY_S)
        route.continue_()

    page.route("**/models", late)
    statuses: dict[str, int] = {}

    def seen(response: Response) -> None:
        statuses.setdefault(response.url.removeprefix(live.url), response.status)

    page.on("response", seen)
    page.goto(live.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.wait_for_function("[...document.images].every((i) => i.complete)")
    page.wait_for_timeout(500)
    shift = page.evaluate("window.__cls")
    context.close()
    assert shift < 0.1, f"cumulative layout shift {shift:.3f}"
    assert statuses.get("/favicon.ico", 200) == 200
    assert all(status < 400 for status in statuses.values()), statuses


def test_the_favicon_is_served(live: LiveServer) -> None:
    with live.client() as client:
        icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/")
    assert icon.content


def test_json_answers_are_gzipped_for_clients_that_accept_it(live: LiveServer) -> None:
    with live.client() as client:
        zipped = client.get("/models", headers={"Accept-Encoding": "gzip"})
        plain = client.get("/models", headers={"Accept-Encoding": "identity"})
        page = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.json() == plain.json()
    assert int(zipped.headers["content-length"]) < len(plain.content)
    assert "default-src 'none'" in page.headers["content-security-policy"]
