"""Issue 17, finding 9 (service part): a `default_version` file makes an older version the one
that answers without `?version=`; a 404 names what is loaded instead."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.images import image_bytes, noise_image
from tests.support.models import ModelRepo
from tests.support.servers import ADMIN_TOKEN, AUTH, LiveServer, make_settings

StartServer = Callable[..., LiveServer]
FILES = {"files": ("a.png", image_bytes(noise_image(1)), "image/png")}


def _digits(client: httpx.Client) -> dict[str, object]:
    response = client.get("/models/digits")
    assert response.status_code == 200, response.text
    info: dict[str, object] = response.json()
    return info


def _served_version(client: httpx.Client) -> int:
    response = client.post("/score", params={"model": "digits"}, files=FILES)
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def _reload(client: httpx.Client) -> list[dict[str, str]]:
    response = client.post("/admin/reload", headers=AUTH)
    assert response.status_code == 200, response.text
    failures: list[dict[str, str]] = response.json()["failures"]
    return failures


def test_default_version_file_pins_an_older_version(
    start_server: StartServer, own_repo: ModelRepo
) -> None:
    pin = own_repo.path / "digits" / "default_version"
    pin.write_text("1\n")
    live = start_server(make_settings(own_repo.path, admin_token=ADMIN_TOKEN))
    with live.client() as client:
        info = _digits(client)
        assert (info["latest_version"], info["default_version"]) == (2, 1)
        assert info["default_version_pinned"] is True
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert listed["digits"]["default_version"] == 1
        assert listed["colour"]["default_version_pinned"] is False
        assert _served_version(client) == 1
        pinned = client.post("/score", params={"model": "digits", "version": 2}, files=FILES)
        assert pinned.json()["version"] == 2

        pin.unlink()
        assert _reload(client) == []
        assert _digits(client)["default_version"] == 2
        assert _served_version(client) == 2


def test_a_bad_pin_is_reported_and_the_latest_serves(
    start_server: StartServer, own_repo: ModelRepo
) -> None:
    pin = own_repo.path / "digits" / "default_version"
    live = start_server(make_settings(own_repo.path, admin_token=ADMIN_TOKEN))
    with live.client() as client:
        for text, words in (("two", "must hold one version number"), ("7", "pins version 7")):
            pin.write_text(text)
            (failure,) = _reload(client)
            assert failure["model"] == "digits" and words in failure["reason"]
            assert "the latest version is the default" in failure["reason"]
            assert _digits(client)["default_version"] == 2
            assert _served_version(client) == 2
        metrics = client.get("/metrics").text
        assert 'deepsvdd_model_load_failures_total{model="digits"} 2.0' in metrics


def test_404s_name_what_is_loaded(client: httpx.Client) -> None:
    for response in (
        client.post("/score", params={"model": "nosuch"}, files=FILES),
        client.get("/models/nosuch"),
    ):
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "model_not_found"
        assert error["message"] == "model 'nosuch' is not loaded (loaded: colour, digits)"
    response = client.post("/score", params={"model": "digits", "version": 9}, files=FILES)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "version_not_found"
    assert error["message"] == "model 'digits' has no version 9 (loaded: [1, 2], default: 2)"
