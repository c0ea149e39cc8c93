"""Issue 17, finding 5: a models directory with nothing to serve says what it expected and what
it found, in the log, in /health/ready and in /score; a reload picks up the fix."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.images import image_bytes, noise_image
from tests.support.models import build_model
from tests.support.servers import ADMIN_TOKEN, AUTH, LiveServer, make_settings, wait_ready

StartServer = Callable[..., LiveServer]
FILES = {"files": ("a.png", image_bytes(noise_image(1)), "image/png")}


def _flat(models: Path) -> None:
    """The first-hour mistake: mymodel/model.onnx, without the version level."""
    path = build_model(models / "tmp", "mymodel", 1).path
    (models / "mymodel").mkdir()
    shutil.move(path, models / "mymodel" / "model.onnx")
    shutil.rmtree(models / "tmp")


def _loose(models: Path) -> None:
    path = build_model(models / "tmp", "mymodel", 1).path
    shutil.move(path, models / "model.onnx")
    shutil.rmtree(models / "tmp")


def _misnamed(models: Path) -> None:
    path = build_model(models, "mymodel", 1).path
    path.rename(path.with_name("weights.onnx"))


def _broken(models: Path) -> None:
    (models / "mymodel" / "1").mkdir(parents=True)
    (models / "mymodel" / "1" / "model.onnx").write_bytes(b"not onnx")


LAYOUTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda models: None, "is empty (expected <name>/<version>/model.onnx under it)"),
    "flat": (_flat, "mymodel/model.onnx has no version directory: move it to mymodel/1/model.onnx"),
    "loose": (
        _loose,
        "model.onnx sits directly in the models directory: move it to <name>/1/model.onnx",
    ),
    "misnamed": (_misnamed, "mymodel/1/ has no model.onnx (found weights.onnx)"),
    "broken": (_broken, "mymodel version 1 was refused: ONNX Runtime cannot load it"),
    "no-versions": (lambda m: (m / "mymodel").mkdir(), "mymodel/ has no version directory"),
}


def _loaded(live: LiveServer) -> None:
    end = time.monotonic() + 30
    while not live.app.state.service.loaded:
        assert time.monotonic() < end, "loading never finished"
        time.sleep(0.01)


def _no_models(response: httpx.Response) -> str:
    assert response.status_code == 503, response.text
    assert "retry-after" not in response.headers  # retrying alone will never help
    error = response.json()["error"]
    assert error["code"] == "no_models"
    message: str = error["message"]
    return message


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_nothing_to_serve_says_why(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, layout: str
) -> None:
    make, expected = LAYOUTS[layout]
    models = tmp_path / "models"
    models.mkdir()
    make(models)
    caplog.set_level(logging.INFO, logger="service")
    live = start_server(make_settings(models), ready=False)
    _loaded(live)
    with live.client() as client:
        ready = _no_models(client.get("/health/ready"))
        assert expected in ready and str(models) in ready
        assert _no_models(client.post("/score", files=FILES)) == ready
    not_ready = [r for r in caplog.records if "not ready" in r.getMessage()]
    assert len(not_ready) == 1 and not_ready[0].levelno == logging.ERROR
    assert expected in not_ready[0].getMessage()


def test_a_missing_directory_says_so(start_server: StartServer, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    settings = make_settings(models)
    models.rmdir()  # gone between the settings check and the load (an unmounted volume)
    live = start_server(settings, ready=False)
    _loaded(live)
    with live.client() as client:
        assert f"models directory {str(models)!r} does not exist" in _no_models(
            client.get("/health/ready")
        )


def test_still_loading_is_a_retry_and_a_reload_fixes_the_layout(
    start_server: StartServer, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    _flat(models)
    live = start_server(make_settings(models, admin_token=ADMIN_TOKEN), ready=False)
    _loaded(live)
    with live.client() as client:
        _no_models(client.get("/health/ready"))
        (models / "mymodel" / "1").mkdir()
        shutil.move(models / "mymodel" / "model.onnx", models / "mymodel" / "1" / "model.onnx")
        reload = client.post("/admin/reload", headers=AUTH)
        assert reload.status_code == 200, reload.text
        wait_ready(live.url)
        assert client.post("/score", files=FILES).status_code == 200


def test_a_broken_sibling_is_logged_while_the_rest_serves(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = tmp_path / "models"
    build_model(models, "digits", 1)
    (models / "other").mkdir()
    caplog.set_level(logging.INFO, logger="service")
    live = start_server(make_settings(models))
    with live.client() as client:
        assert client.get("/health/ready").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("other/ has no version directory" in w for w in warnings), warnings
