"""Issue 24, part 2: a traffic policy per model (weights per version in traffic.json or through
the admin API), promotion and rollback, and refusals of a policy that cannot serve; the
previous policy keeps serving."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as triton

from service.repository import Repository
from service.traffic import PolicyError, TrafficPolicy
from tests.support.images import image_bytes, noise_image
from tests.support.metrics import metric_value
from tests.support.models import ModelRepo
from tests.support.servers import ADMIN_TOKEN, AUTH, LiveServer, free_port, make_settings

StartServer = Callable[..., LiveServer]
FILES = {"files": ("a.png", image_bytes(noise_image(1)), "image/png")}
TRAFFIC = "/admin/models/digits/traffic"


def served_version(client: httpx.Client, **params: Any) -> int:
    response = client.post("/score", params={"model": "digits", **params}, files=FILES)
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def oip_version(client: httpx.Client) -> str:
    image = np.zeros((1, 1, 28, 28), dtype=np.float32)
    body = {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32"}]}
    body["inputs"][0]["data"] = image.reshape(-1).tolist()
    response = client.post("/v2/models/digits/infer", content=orjson.dumps(body))
    assert response.status_code == 200, response.text
    version: str = response.json()["model_version"]
    return version


@pytest.fixture
def live(start_server: StartServer, own_repo: ModelRepo) -> LiveServer:
    return start_server(make_settings(own_repo.path, admin_token=ADMIN_TOKEN))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"weights": {"1": 90, "2": 20}}, "add up to 110"),
        ({"weights": {"1": 0, "2": 0}}, "add up to 0"),
        ({"weights": {"1": 110, "2": -10}}, "negative"),
        ({"weights": {"1": "ninety", "2": 10}}, "must be a number"),
        ({"weights": {"1": True}}, "must be a number"),
        ({"weights": {"latest": 100}}, "must be a version number"),
        ({"weights": {}}, "at least one version"),
        ({"weights": {"1": 100}, "shadow": "two"}, "'shadow' must be a version number"),
        ({"wieghts": {"1": 100}}, "unknown keys"),
        ([1, 2], "JSON object"),
    ],
)
def test_a_policy_that_does_not_add_up_is_refused(data: Any, words: str) -> None:
    with pytest.raises(PolicyError, match=words):
        TrafficPolicy.parse(data)


def test_weights_draw_their_share_and_a_seed_repeats_the_draws() -> None:
    policy = TrafficPolicy.parse({"weights": {"1": 90, "2": 10.0}})
    draws = [policy.pick(random.Random(7)) for _ in range(3)]
    assert draws == [draws[0]] * 3
    rng = random.Random(1)
    counts = Counter(policy.pick(rng) for _ in range(20_000))
    assert set(counts) == {1, 2} and abs(counts[2] / 20_000 - 0.10) < 0.01
    assert TrafficPolicy.parse({"weights": {"1": 100, "2": 0}}).pick(rng) == 1


def test_a_policy_naming_a_version_not_loaded_is_refused() -> None:
    policy = TrafficPolicy.parse({"weights": {"3": 100}})
    with pytest.raises(PolicyError, match=r"version 3 of .digits. is not loaded \(loaded: \[\]\)"):
        policy.check(Repository(), "digits")


def test_the_file_routes_requests_naming_no_version(live: LiveServer, own_repo: ModelRepo) -> None:
    policy = own_repo.path / "digits" / "traffic.json"
    (own_repo.path / "digits" / "default_version").write_text("2\n")
    with live.client() as client:
        assert served_version(client) == 2
        policy.write_text(json.dumps({"weights": {"1": 100}}))
        assert client.post("/admin/reload", headers=AUTH).json()["failures"] == []
        assert served_version(client) == 1 and oip_version(client) == "1"
        assert served_version(client, version=2) == 2
        info = client.get("/models/digits").json()
        assert info["traffic"] == {
            "policy": {"weights": {"1": 100.0}, "shadow": None, "previous": None},
            "error": None,
        }
        assert info["default_version"] == 2
        policy.unlink()
        client.post("/admin/reload", headers=AUTH)
        assert served_version(client) == 2


def test_a_seeded_draw_picks_each_requests_version(live: LiveServer) -> None:
    with live.client() as client:
        body = {"weights": {"1": 50, "2": 50}}
        assert client.put(TRAFFIC, json=body, headers=AUTH).status_code == 200
        live.app.state.service.traffic_rng = random.Random(3)
        served = [served_version(client) for _ in range(30)]
    expected_rng = random.Random(3)
    policy = TrafficPolicy.parse(body)
    assert served == [policy.pick(expected_rng) for _ in range(30)]
    assert set(served) == {1, 2}


def test_bad_policies_are_refused_and_the_previous_one_keeps_serving(
    live: LiveServer, own_repo: ModelRepo
) -> None:
    path = own_repo.path / "digits" / "traffic.json"
    with live.client() as client:
        good = client.put(TRAFFIC, json={"weights": {"1": 100}}, headers=AUTH)
        assert good.status_code == 200, good.text
        written = path.read_text()
        for body, words in (
            ({"weights": {"1": 60, "2": 60}}, "add up to 120"),
            ({"weights": {"1": 50, "7": 50}}, "version 7 of 'digits' is not loaded"),
            ({"weights": {"1": 100}, "shadow": 9}, "version 9 of 'digits' is not loaded"),
        ):
            refused = client.put(TRAFFIC, json=body, headers=AUTH)
            assert refused.status_code == 422 and words in refused.json()["error"]["message"]
            assert path.read_text() == written
            assert served_version(client) == 1

        path.write_text(json.dumps({"weights": {"2": 100, "1": -1}}))
        (failure,) = client.post("/admin/reload", headers=AUTH).json()["failures"]
        assert failure["model"] == "digits" and "negative" in failure["reason"]
        assert "the previous policy keeps serving" in failure["reason"]
        assert served_version(client) == 1
        traffic = client.get("/models/digits").json()["traffic"]
        assert traffic["policy"]["weights"] == {"1": 100.0} and "negative" in traffic["error"]
        answer = client.get(TRAFFIC, headers=AUTH).json()
        assert answer["model"] == "digits" and "negative" in answer["error"]


def test_promote_and_roll_back(live: LiveServer) -> None:
    with live.client() as client:
        none = client.post("/admin/models/digits/rollback", headers=AUTH)
        assert none.status_code == 409 and none.json()["error"]["code"] == "nothing_to_roll_back"
        client.put(TRAFFIC, json={"weights": {"1": 90, "2": 10}, "shadow": 2}, headers=AUTH)
        promoted = client.post("/admin/models/digits/promote", json={"version": 2}, headers=AUTH)
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["policy"] == {"weights": {"2": 100.0}, "shadow": None, "previous": 1}
        assert {served_version(client) for _ in range(5)} == {2}
        back = client.post("/admin/models/digits/rollback", headers=AUTH)
        assert back.json()["policy"] == {"weights": {"1": 100.0}, "shadow": None, "previous": 2}
        assert {served_version(client) for _ in range(5)} == {1}
        missing = client.post("/admin/models/digits/promote", json={"version": 5}, headers=AUTH)
        assert missing.status_code == 422
        assert client.delete(TRAFFIC, headers=AUTH).json()["policy"] is None
        assert served_version(client) == 2
        assert client.get(TRAFFIC).status_code == 401
        assert client.get("/admin/models/nothing/traffic", headers=AUTH).status_code == 404


def test_the_admin_api_is_absent_without_a_token(
    start_server: StartServer, own_repo: ModelRepo
) -> None:
    live = start_server(make_settings(own_repo.path))
    with live.client() as client:
        assert client.put(TRAFFIC, json={"weights": {"1": 100}}).status_code == 404


def test_metrics_count_each_routed_version(live: LiveServer) -> None:
    with live.client() as client:
        client.put(TRAFFIC, json={"weights": {"1": 100}}, headers=AUTH)
        before = metric_value(
            client.get("/metrics").text, "deepsvdd_images_scored_total", model="digits", version="1"
        )
        for _ in range(3):
            served_version(client)
        after = metric_value(
            client.get("/metrics").text, "deepsvdd_images_scored_total", model="digits", version="1"
        )
    assert after - before == 3


def test_grpc_answers_name_the_routed_version(
    start_server: StartServer, own_repo: ModelRepo
) -> None:
    (own_repo.path / "digits" / "traffic.json").write_text('{"weights": {"1": 100}}')
    settings = make_settings(own_repo.path, admin_token=ADMIN_TOKEN, grpc_port=free_port())
    live = start_server(settings)
    batch = np.zeros((1, 1, 28, 28), dtype=np.float32)
    image = triton.InferInput("image", list(batch.shape), "FP32")
    image.set_data_from_numpy(batch)
    with triton.InferenceServerClient(f"127.0.0.1:{settings.grpc_port}") as oip:
        answer = oip.infer("digits", [image]).get_response()
        pinned = oip.infer("digits", [image], model_version="2").get_response()
    assert (answer.model_version, pinned.model_version) == ("1", "2")
    assert live.app.state.service.deployment.traffic.policy("digits") is not None


def test_a_file_naming_a_version_not_loaded_never_takes_serving_down(
    start_server: StartServer, own_repo: ModelRepo, caplog: pytest.LogCaptureFixture
) -> None:
    (own_repo.path / "digits" / "traffic.json").write_text('{"weights": {"1": 50, "7": 50}}')
    live = start_server(make_settings(own_repo.path, admin_token=ADMIN_TOKEN))
    with live.client() as client:
        assert client.get("/health/ready").status_code == 200
        assert {served_version(client) for _ in range(5)} == {2}
        traffic = client.get("/models/digits").json()["traffic"]
    assert traffic["policy"] is None
    assert traffic["error"] == (
        "version 7 of 'digits' is not loaded (loaded: [1, 2]); version 2 (the default) serves"
    )
    assert any(
        "refused the traffic policy of digits" in r.getMessage() and r.levelname == "ERROR"
        for r in caplog.records
    )
