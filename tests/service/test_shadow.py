"""Issue 24, parts 2 and 4: a shadow version scores the images its primary answered, off the
response path; its agreement and rank correlation are gauges; one that fails or lags is
dropped and counted, and the primary's answers are neither slowed nor failed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from service.repository import LoadedModel
from service.shadow import MAX_IN_FLIGHT, Comparison, rank_correlation
from tests.support.images import image_bytes, noise_image
from tests.support.metrics import metric_value, metric_value_or_zero
from tests.support.models import ModelRepo
from tests.support.servers import ADMIN_TOKEN, AUTH, LiveServer, make_settings

StartServer = Callable[..., LiveServer]
SHADOWED = {"weights": {"1": 100}, "shadow": 2}
PAIR = {"model": "digits", "primary": "1", "shadow": "2"}
SLOW_S = 1.0


def files(count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.png", image_bytes(noise_image(i)), "image/png")) for i in range(count)]


def score(client: httpx.Client, count: int = 4) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = client.post("/score", params={"model": "digits"}, files=files(count))
    return response, time.perf_counter() - start


def wait_for(client: httpx.Client, name: str, at_least: float, **labels: str) -> float:
    end = time.monotonic() + 10.0
    while True:
        value = metric_value_or_zero(client.get("/metrics").text, name, **labels)
        if value >= at_least or time.monotonic() > end:
            return value
        time.sleep(0.05)


class _Session:
    """Stands in for the shadow's ONNX Runtime session: raises, or sleeps first."""

    def __init__(self, real: Any, fail: bool) -> None:
        self.real, self.fail = real, fail

    def run(self, *args: Any) -> Any:
        if self.fail:
            raise RuntimeError("the shadow's session broke")
        time.sleep(SLOW_S)
        return self.real.run(*args)


@pytest.fixture
def live(start_server: StartServer, own_repo: ModelRepo) -> LiveServer:
    live = start_server(make_settings(own_repo.path, admin_token=ADMIN_TOKEN))
    with live.client() as client:
        answer = client.put("/admin/models/digits/traffic", json=SHADOWED, headers=AUTH)
        assert answer.status_code == 200, answer.text
    return live


def shadow_model(live: LiveServer) -> LoadedModel:
    model: LoadedModel = live.app.state.service.deployment.repository.get("digits", 2)
    return model


def test_rank_correlation_and_agreement_over_the_window() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert rank_correlation(a, a * 10) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(a, np.ones(4)))
    window = Comparison(size=4)
    window.add(np.array([1.0, 5.0]), np.array([1.0, 1.0]), (2.0, 2.0))
    assert window.agreement() == 0.5
    window.add(np.array([1.0, 1.0, 1.0, 1.0]), np.array([0.0, 0.0, 0.0, 0.0]), (2.0, 2.0))
    assert window.agreement() == 1.0 and len(window.alike) == 4


def test_the_shadow_scores_the_same_images_and_the_answer_is_the_primarys(
    live: LiveServer,
) -> None:
    with live.client() as client:
        for _ in range(3):
            response, _ = score(client)
            assert response.status_code == 200 and response.json()["version"] == 1
        assert wait_for(client, "deepsvdd_shadow_images_total", 12, model="digits", version="2")
        text = client.get("/metrics").text
        agreement = metric_value(text, "deepsvdd_shadow_agreement", **PAIR)
        rho = metric_value(text, "deepsvdd_shadow_rank_correlation", **PAIR)
        assert 0.0 <= agreement <= 1.0 and -1.0 <= rho <= 1.0
        assert metric_value(text, "deepsvdd_images_scored_total", model="digits", version="2") == 0
        assert metric_value(text, "deepsvdd_images_scored_total", model="digits", version="1") == 12


def test_a_failing_shadow_is_dropped_and_counted(live: LiveServer) -> None:
    model = shadow_model(live)
    object.__setattr__(model, "session", _Session(model.session, fail=True))
    with live.client() as client:
        for _ in range(3):
            response, _ = score(client)
            assert response.status_code == 200 and response.json()["version"] == 1
        dropped = wait_for(
            client, "deepsvdd_shadow_dropped_total", 3, model="digits", reason="error"
        )
        assert dropped == 3
        text = client.get("/metrics").text
        assert metric_value_or_zero(text, "deepsvdd_shadow_agreement", **PAIR) == 0.0


def test_a_lagging_shadow_never_slows_the_primary(live: LiveServer) -> None:
    model = shadow_model(live)
    object.__setattr__(model, "session", _Session(model.session, fail=False))
    requests = MAX_IN_FLIGHT + 3
    with live.client() as client:
        answers = [score(client) for _ in range(requests)]
        assert all(r.status_code == 200 and r.json()["version"] == 1 for r, _ in answers)
        assert max(seconds for _, seconds in answers) < SLOW_S / 2
        busy = metric_value_or_zero(
            client.get("/metrics").text,
            "deepsvdd_shadow_dropped_total",
            model="digits",
            reason="busy",
        )
        assert busy == requests - MAX_IN_FLIGHT
        done = wait_for(client, "deepsvdd_shadow_images_total", 8, model="digits", version="2")
        assert done == 4 * MAX_IN_FLIGHT
