"""Makes docs/web-page.png: the page at / in headless Chromium, with Fashion-MNIST uploads.

The sneaker model is served from a temporary copy of models/ with its report figures from
bench/figures placed beside it, where the page looks for them. Run: .venv/bin/python
docs/screenshot.py (needs Debian's chromium and the dev extra's playwright).
"""

from __future__ import annotations

import gzip
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
MODEL = "fashion-mnist-sneaker"
SNEAKER, SANDAL, BAG = 7, 5, 8


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(raw[3])]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


def uploads(folder: Path) -> list[Path]:
    x = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    y = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    sneakers = x[y == SNEAKER]
    planted = sneakers[2].copy()
    planted[2:8, 2:8] = 255  # a bright square off the shoe: a defect the map should find
    images = {
        "sneaker-1.png": sneakers[0],
        "sneaker-2.png": sneakers[1],
        "sneaker-with-square.png": planted,
        "sandal.png": x[y == SANDAL][0],
        "bag.png": x[y == BAG][0],
    }
    paths = []
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        shutil.copytree(ROOT / "models" / MODEL, models / MODEL)
        for figure in ("roc", "scores"):
            shutil.copy(ROOT / "bench" / "figures" / f"{MODEL}-{figure}.png", models / MODEL)
        settings = Settings(
            models_dir=models, providers="CPUExecutionProvider", log_level="warning"
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
                )
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                expect(page.locator("#figures img")).to_have_count(2)
                page.set_input_files("#files", [str(p) for p in uploads(Path(tmp))])
                expect(page.locator("#results img.map")).to_have_count(5, timeout=60_000)
                page.screenshot(path=str(ROOT / "docs" / "web-page.png"), full_page=True)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(10)


if __name__ == "__main__":
    main()
