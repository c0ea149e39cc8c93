"""Concurrency over real HTTP: batched scores equal single ones, shedding, failures, reload."""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from service.repository import LoadedModel
from tests.support.images import image_bytes, noise_image
from tests.support.metrics import metric_value, metric_value_or_zero
from tests.support.models import ModelRepo, build_model
from tests.support.servers import ADMIN_TOKEN, LiveServer, make_settings

StartServer = Callable[..., LiveServer]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _files(seeds: list[int]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"s{s}.png", image_bytes(noise_image(s)), "image/png")) for s in seeds]


def test_batched_scores_equal_single_scores_in_upload_order(
    start_server: StartServer, model_repo: ModelRepo
) -> None:
    live = start_server(make_settings(model_repo.path, max_batch=16, max_delay_ms=30))
    requests = [[100 * i + j for j in range(1 + i % 3)] for i in range(16)]
    with live.client() as client:
        alone = {
            seed: client.post("/score", params={"model": "digits"}, files=_files([seed])).json()
            for seeds in requests
            for seed in seeds
        }
        before = client.get("/metrics").text

        def score(seeds: list[int]) -> httpx.Response:
            return client.post("/score", params={"model": "digits"}, files=_files(seeds))

        with ThreadPoolExecutor(len(requests)) as pool:
            responses = list(pool.map(score, requests))
        after = client.get("/metrics").text

    for seeds, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["filename"] for r in results] == [f"s{s}.png" for s in seeds]
        assert [r["index"] for r in results] == list(range(len(seeds)))
        for seed, result in zip(seeds, results, strict=True):
            single = alone[seed]["results"][0]["score"]
            assert math.isclose(result["score"], single, rel_tol=1e-5)
    images = sum(len(s) for s in requests)
    runs = metric_value(after, "deepsvdd_batch_size_count", model="digits") - metric_value(
        before, "deepsvdd_batch_size_count", model="digits"
    )
    assert (
        metric_value(after, "deepsvdd_batch_size_sum", model="digits")
        - metric_value(before, "deepsvdd_batch_size_sum", model="digits")
        == images
    )
    assert runs < len(requests)  # concurrent requests shared runs


def test_overload_is_shed_with_503_and_retry_after(
    start_server: StartServer, model_repo: ModelRepo
) -> None:
    settings = make_settings(model_repo.path, max_queue=4, max_images=4, max_delay_ms=1500)
    live = start_server(settings)
    with live.client() as client, ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda s: client.post("/score", files=_files([s])), range(12)))
        metrics = client.get("/metrics").text
    ok = [r for r in responses if r.status_code == 200]
    shed = [r for r in responses if r.status_code == 503]
    assert len(ok) + len(shed) == 12
    assert len(ok) >= 4 and shed
    for response in shed:
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"]["code"] == "queue_full"
    rejected = metric_value(metrics, "deepsvdd_rejected_requests_total", reason="queue_full")
    assert rejected == len(shed)


def test_an_inference_failure_is_a_500_and_the_next_batch_works(
    start_server: StartServer, model_repo: ModelRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = start_server(make_settings(model_repo.path))
    original = LoadedModel.run
    failures = [1]

    def flaky(self: LoadedModel, images: np.ndarray) -> np.ndarray:
        if failures:
            failures.pop()
            raise RuntimeError("simulated ONNX Runtime failure")
        return original(self, images)

    monkeypatch.setattr(LoadedModel, "run", flaky)
    with live.client() as client:
        failed = client.post("/score", files=_files([1]))
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "inference_failed"
        assert "simulated" not in failed.text
        assert client.post("/score", files=_files([1])).status_code == 200


def test_reload_swaps_models_without_failing_requests(
    start_server: StartServer, own_repo: ModelRepo
) -> None:
    live = start_server(make_settings(own_repo.path, admin_token=ADMIN_TOKEN, max_delay_ms=5))
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def hammer() -> None:
        with live.client() as client:
            while not stop.is_set():
                response = client.post("/score", params={"model": "digits"}, files=_files([1, 2]))
                version = response.json().get("version", 0) if response.status_code == 200 else 0
                seen.append((response.status_code, version))

    with live.client() as client:
        before = client.get("/metrics").text
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        while len(seen) < 8:
            stop.wait(0.01)
        build_model(own_repo.path, "digits", 3, seed=33)
        (own_repo.path / "digits" / "4").mkdir()
        (own_repo.path / "digits" / "4" / "model.onnx").write_bytes(b"broken on purpose")
        own_repo.model("digits", 1).path.write_bytes(b"broken on purpose")
        reloaded = client.post("/admin/reload", headers=AUTH)
        count = len(seen)
        while len(seen) < count + 8:
            stop.wait(0.01)
        stop.set()
        for thread in threads:
            thread.join()
        after = client.get("/metrics").text
        latest = client.post("/score", params={"model": "digits"}, files=_files([1])).json()
        kept = client.post("/score", params={"model": "digits", "version": 1}, files=_files([1]))

    assert reloaded.status_code == 200, reloaded.text
    body = reloaded.json()
    assert {(m["name"], m["version"]) for m in body["loaded"]} == {
        ("colour", 1),
        ("digits", 1),
        ("digits", 2),
        ("digits", 3),
    }
    assert {(f["model"], f["version"]) for f in body["failures"]} == {
        ("digits", "1"),
        ("digits", "4"),
    }
    assert all(status == 200 for status, _ in seen), seen
    assert {version for _, version in seen} <= {2, 3} and seen[-1][1] == 3
    assert latest["version"] == 3
    assert kept.status_code == 200  # its file broke, its loaded session still serves
    failures = metric_value(after, "deepsvdd_model_load_failures_total", model="digits")
    # Before the first refusal the counter has no `digits` series yet.
    earlier = metric_value_or_zero(before, "deepsvdd_model_load_failures_total", model="digits")
    assert failures - earlier == 2
    info = {"model": "digits", "version": "3", "provider": "CPUExecutionProvider"}
    assert metric_value(after, "deepsvdd_model_info", objective="one-class", **info) == 1
    assert "/tmp" not in reloaded.text and str(own_repo.path) not in reloaded.text


def test_reload_retires_removed_models(start_server: StartServer, own_repo: ModelRepo) -> None:
    live = start_server(make_settings(own_repo.path, admin_token=ADMIN_TOKEN))
    for version_dir in (own_repo.path / "colour").iterdir():
        (version_dir / "model.onnx").unlink()
    with live.client() as client:
        assert client.post("/admin/reload", headers=AUTH).status_code == 200
        gone = client.post("/score", params={"model": "colour"}, files=_files([1]))
        metrics = client.get("/metrics").text
        models = client.get("/models").json()["models"]
    assert gone.status_code == 404
    assert [m["name"] for m in models] == ["digits"]
    assert 'model="colour"' not in "\n".join(
        line for line in metrics.splitlines() if line.startswith("deepsvdd_model_info")
    )
    assert metric_value(metrics, "deepsvdd_model_ready", model="colour") == 0


def test_retired_versions_leave_no_batcher_threads(
    start_server: StartServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each version has a scheduling thread; a version that leaves the repository takes it
    with it, over many reloads."""
    models = tmp_path_factory.mktemp("versions")
    build_model(models, "m", 1)
    live = start_server(make_settings(models, admin_token=ADMIN_TOKEN))

    def batcher_threads() -> int:
        return sum(t.name.startswith("batcher-m-") for t in threading.enumerate())

    with live.client() as client:
        for version in range(2, 14):
            build_model(models, "m", version)
            shutil.rmtree(models / "m" / str(version - 1))
            assert client.post("/admin/reload", headers=AUTH).status_code == 200
            assert client.post("/score", files=_files([version])).json()["version"] == version
            assert batcher_threads() <= 2  # the served version, and one retiring at most
    deadline = time.monotonic() + 10
    while batcher_threads() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batcher_threads() == 1
