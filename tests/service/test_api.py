"""The HTTP API against a live uvicorn server: scoring, models, health, metrics, errors."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from service.schemas import ScoreResponse
from service.settings import Settings
from tests.support.images import image_bytes, noise_image
from tests.support.metrics import metric_value
from tests.support.models import ModelRepo
from tests.support.servers import LiveServer, make_settings

StartServer = Callable[..., LiveServer]


def _png(seed: int, mode: str = "L", size: tuple[int, int] = (28, 28)) -> bytes:
    return image_bytes(noise_image(seed, size, mode))


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    return message


def test_scores_multipart_uploads_in_order(client: httpx.Client, model_repo: ModelRepo) -> None:
    images = [noise_image(seed) for seed in range(3)]
    files = [
        ("files", (f"img{i}.png", image_bytes(im), "image/png")) for i, im in enumerate(images)
    ]
    response = client.post("/score", params={"model": "digits"}, files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert ScoreResponse.model_validate(body).model_dump() == body  # the documented schema
    model = model_repo.model("digits", 2)
    assert body["model"] == "digits" and body["version"] == 2
    assert body["threshold"] == {"name": "q0.95", "value": model.thresholds["q0.95"]}
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    assert [r["filename"] for r in body["results"]] == ["img0.png", "img1.png", "img2.png"]
    for result, image in zip(body["results"], images, strict=True):
        assert math.isclose(result["score"], model.reference_image(image), rel_tol=1e-5)
        assert result["is_anomaly"] == (result["score"] > model.thresholds["q0.95"])


def test_scores_a_raw_image_body(client: httpx.Client, model_repo: ModelRepo) -> None:
    image = noise_image(5, (32, 32), "RGB")
    response = client.post(
        "/score",
        params={"model": "colour"},
        content=image_bytes(image, "JPEG"),
        headers={"content-type": "image/jpeg"},
    )
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["index"] == 0 and result["filename"] is None
    decoded = Image.open(io.BytesIO(image_bytes(image, "JPEG")))
    expected = model_repo.model("colour", 1).reference_image(decoded)
    assert math.isclose(result["score"], expected, rel_tol=1e-5)


def test_default_model_pinned_version_and_thresholds(
    client: httpx.Client, model_repo: ModelRepo
) -> None:
    files = {"files": ("a.png", _png(1), "image/png")}
    default = client.post("/score", files=files).json()
    assert (default["model"], default["version"]) == ("digits", 2)
    pinned = client.post("/score", params={"version": 1}, files=files).json()
    assert pinned["version"] == 1
    expected = model_repo.model("digits", 1).reference_image(noise_image(1))
    assert math.isclose(pinned["results"][0]["score"], expected, rel_tol=1e-5)
    named = client.post("/score", params={"threshold": "max"}, files=files).json()
    assert named["threshold"]["name"] == "max"
    assert named["results"][0]["is_anomaly"] is False
    custom = client.post("/score", params={"threshold": "0"}, files=files).json()
    assert custom["threshold"] == {"name": "custom", "value": 0.0}
    assert custom["results"][0]["is_anomaly"] is True


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"model": "nope"}, 404, "model_not_found"),
        ({"model": "../digits"}, 404, "model_not_found"),
        ({"model": "digits", "version": 9}, 404, "version_not_found"),
        ({"version": "two"}, 422, "invalid_parameters"),
        ({"version": 0}, 422, "invalid_parameters"),
        ({"threshold": "median"}, 422, "invalid_parameters"),
        ({"threshold": "nan"}, 422, "invalid_parameters"),
        ({"threshold": "-1"}, 422, "invalid_parameters"),
        ({"model": "x" * 65}, 422, "invalid_parameters"),
    ],
)
def test_bad_queries_get_json_errors(
    client: httpx.Client, params: dict[str, object], status: int, code: str
) -> None:
    files = {"files": ("a.png", _png(1), "image/png")}
    _error(client.post("/score", params=params, files=files), status, code)  # type: ignore[arg-type]


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    _error(client.get("/nowhere"), 404, "not_found")
    _error(client.get("/score"), 405, "method_not_allowed")
    _error(client.get("/models/nope"), 404, "model_not_found")


def test_models_lists_versions_and_active_providers(
    client: httpx.Client, model_repo: ModelRepo
) -> None:
    body = client.get("/models").json()
    assert body["default_model"] == "digits"
    assert [m["name"] for m in body["models"]] == ["colour", "digits"]
    digits = client.get("/models/digits").json()
    assert digits["latest_version"] == 2 and digits["is_default"] is True
    v2 = digits["versions"][1]
    assert v2["version"] == 2 and v2["center_dim"] == 8 and v2["radius"] is None
    assert v2["input"] == {"channels": 1, "height": 28, "width": 28, "color": "L"}
    assert v2["thresholds"] == model_repo.model("digits", 2).thresholds
    assert v2["default_threshold"] == "q0.95" and v2["metrics"] == {"auc": 0.9}
    assert v2["dataset"]["name"] == "synthetic"
    assert v2["providers"] == ["CPUExecutionProvider"]
    colour = client.get("/models/colour").json()
    assert colour["versions"][0]["input"]["color"] == "RGB"


def test_health(client: httpx.Client) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "live"
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["models"] == ["colour", "digits"]


def test_openapi_docs(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/score", "/models", "/models/{name}", "/health/ready", "/admin/reload"} <= set(
        spec["paths"]
    )
    score = spec["paths"]["/score"]["post"]
    assert "multipart/form-data" in score["requestBody"]["content"]
    assert score["description"] or score["summary"]


def test_metrics_move_with_scoring(client: httpx.Client, model_repo: ModelRepo) -> None:
    def scrape() -> str:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    before = scrape()
    threshold = model_repo.model("digits", 2).thresholds["q0.95"]
    files = [("files", (f"{i}.png", _png(100 + i), "image/png")) for i in range(4)]
    body = client.post("/score", params={"threshold": "0"}, files=files).json()
    assert all(r["is_anomaly"] for r in body["results"])
    client.get("/nowhere")
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("deepsvdd_images_scored_total", model="digits", version="2") == 4
    assert delta("deepsvdd_anomalies_total", model="digits", version="2") == 4
    assert delta("deepsvdd_score_ratio_count", model="digits") == 4
    assert delta("deepsvdd_score_ratio_bucket", model="digits", le="10.0") == 0  # ratio = inf
    labels = {"route": "/score", "method": "POST", "status": "2xx"}
    assert delta("deepsvdd_request_duration_seconds_count", **labels) == 1
    unmatched = {"route": "unmatched", "method": "GET", "status": "4xx"}
    assert delta("deepsvdd_request_duration_seconds_count", **unmatched) == 1
    assert delta("deepsvdd_inference_duration_seconds_count", model="digits") >= 1
    assert delta("deepsvdd_batch_size_sum", model="digits") == 4
    assert metric_value(after, "deepsvdd_queue_depth") == 0
    info = {"model": "digits", "version": "2", "provider": "CPUExecutionProvider"}
    assert metric_value(after, "deepsvdd_model_info", objective="one-class", **info) == 1
    assert metric_value(after, "deepsvdd_model_threshold", model="digits", version="2") == (
        pytest.approx(threshold)
    )
    rate = metric_value(after, "deepsvdd_model_expected_anomaly_rate", model="digits", version="2")
    assert rate == pytest.approx(0.05)
    assert metric_value(after, "deepsvdd_model_ready", model="colour") == 1
    assert "/nowhere" not in after


def test_default_providers_report_what_runs(
    start_server: StartServer, model_repo: ModelRepo
) -> None:
    settings = Settings(
        models_dir=model_repo.path, intra_op_threads=1, log_level="warning", grpc_port=0
    )
    live = start_server(settings)
    with live.client() as client:
        providers = client.get("/models/digits").json()["versions"][0]["providers"]
        metrics = client.get("/metrics").text
    state = live.app.state.service
    model = state.deployment.repository.get("digits")
    assert providers == list(model.session.get_providers())
    assert providers[-1] == "CPUExecutionProvider"
    labels = {"model": "digits", "version": "2", "provider": providers[0]}
    assert metric_value(metrics, "deepsvdd_model_info", objective="one-class", **labels) == 1


def test_unhandled_errors_are_json_without_details(
    start_server: StartServer, model_repo: ModelRepo
) -> None:
    live = start_server(make_settings(model_repo.path))

    def explode() -> None:
        raise OSError(f"secret path {model_repo.path}")

    live.app.add_api_route("/explode", explode)
    with live.client() as client:
        response = client.get("/explode")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal server error"}}


def test_admin_reload_needs_the_token(client: httpx.Client) -> None:
    _error(client.post("/admin/reload"), 401, "unauthorized")
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer wrong-token-123"})
    assert _error(wrong, 401, "unauthorized") and wrong.headers["www-authenticate"] == "Bearer"
    _error(
        client.post("/admin/reload", headers={"Authorization": "Basic abc"}), 401, "unauthorized"
    )


def test_admin_is_absent_without_a_token(start_server: StartServer, model_repo: ModelRepo) -> None:
    live = start_server(make_settings(model_repo.path))
    with live.client() as client:
        response = client.post("/admin/reload", headers={"Authorization": "Bearer anything-at-all"})
    _error(response, 404, "not_found")
