"""The micro-batcher: one ONNX Runtime run for concurrent requests, order, limits, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from service.batching import AdmissionBudget, Batcher
from service.errors import ApiError
from service.metrics import Metrics
from service.repository import LoadedModel, SessionConfig, load_repository
from tests.support.metrics import metric_value
from tests.support.models import ModelRepo

CPU = SessionConfig(providers=["CPUExecutionProvider"], intra_op_threads=1)


@pytest.fixture(scope="module")
def digits(model_repo: ModelRepo) -> LoadedModel:
    repo, _ = load_repository(model_repo.path, CPU)
    model = repo.get("digits", 1)
    assert model is not None
    return model


def _images(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((count, 1, 28, 28), dtype=np.float32)


def _batcher(model: LoadedModel, metrics: Metrics, **kwargs: float) -> Batcher:
    options = {"max_batch": 64, "max_delay_s": 0.05, "capacity": 1024, **kwargs}
    budget = AdmissionBudget(int(options["capacity"]), metrics.queue_depth)
    return Batcher(
        model,
        max_batch=int(options["max_batch"]),
        max_delay_s=options["max_delay_s"],
        budget=budget,
        metrics=metrics,
    )


def _samples(metrics: Metrics, name: str, **labels: str) -> float:
    return metric_value(metrics.render()[0].decode(), name, **labels)


def test_concurrent_requests_share_one_run_and_keep_their_order(digits: LoadedModel) -> None:
    metrics = Metrics()
    requests = [_images(seed, count) for seed, count in enumerate([1, 3, 2, 5, 1])]

    async def scenario() -> list[np.ndarray]:
        batcher = _batcher(digits, metrics)
        batcher.start()
        with batcher.lease():
            results = await asyncio.gather(*(batcher.score(images) for images in requests))
        await batcher.close()
        return list(results)

    results = asyncio.run(scenario())
    for images, scores in zip(requests, results, strict=True):
        alone = np.array([digits.run(images[i : i + 1])[0] for i in range(len(images))])
        np.testing.assert_allclose(scores, alone, rtol=1e-5)
    assert _samples(metrics, "deepsvdd_batch_size_count", model="digits") == 1
    assert _samples(metrics, "deepsvdd_batch_size_sum", model="digits") == 12
    assert _samples(metrics, "deepsvdd_queue_wait_seconds_count") == 5
    assert _samples(metrics, "deepsvdd_queue_depth") == 0


def test_runs_hold_at_most_max_batch_images(digits: LoadedModel) -> None:
    metrics = Metrics()
    images = _images(7, 5)

    async def scenario() -> np.ndarray:
        batcher = _batcher(digits, metrics, max_batch=2)
        batcher.start()
        scores = await batcher.score(images)
        await batcher.close()
        return scores

    scores = asyncio.run(scenario())
    np.testing.assert_allclose(scores, digits.run(images), rtol=1e-5)
    assert _samples(metrics, "deepsvdd_batch_size_count", model="digits") == 3
    assert _samples(metrics, "deepsvdd_batch_size_bucket", model="digits", le="2.0") == 3
    assert _samples(metrics, "deepsvdd_inference_duration_seconds_count", model="digits") == 3


def test_a_full_queue_sheds_the_request(digits: LoadedModel) -> None:
    metrics = Metrics()

    async def scenario() -> tuple[np.ndarray, ApiError]:
        batcher = _batcher(digits, metrics, capacity=4, max_delay_s=0.2)
        batcher.start()
        first = asyncio.create_task(batcher.score(_images(1, 3)))
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as refused:
            await batcher.score(_images(2, 2))
        scores = await first
        await batcher.close()
        return scores, refused.value

    scores, error = asyncio.run(scenario())
    assert scores.shape == (3,)
    assert error.status == 503 and error.code == "queue_full"
    assert error.headers["Retry-After"].isdigit()


@pytest.fixture
def failing_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Makes the next `LoadedModel.run` raise, as an ONNX Runtime failure would."""
    calls: list[int] = []
    original = LoadedModel.run

    def run(self: LoadedModel, images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("simulated ONNX Runtime failure")
        return original(self, images)

    monkeypatch.setattr(LoadedModel, "run", run)
    yield calls


def test_a_failed_run_fails_only_its_batch(digits: LoadedModel, failing_once: list[int]) -> None:
    metrics = Metrics()

    async def scenario() -> tuple[list[object], np.ndarray]:
        batcher = _batcher(digits, metrics)
        batcher.start()
        first = await asyncio.gather(
            batcher.score(_images(1, 1)), batcher.score(_images(2, 2)), return_exceptions=True
        )
        after = await batcher.score(_images(3, 2))
        await batcher.close()
        return list(first), after

    first, after = asyncio.run(scenario())
    assert all(isinstance(e, ApiError) and e.status == 500 for e in first)
    assert all(isinstance(e, ApiError) and e.code == "inference_failed" for e in first)
    assert after.shape == (2,) and failing_once == [3, 2]
    assert _samples(metrics, "deepsvdd_queue_depth") == 0


def test_close_scores_what_is_queued(digits: LoadedModel) -> None:
    metrics = Metrics()

    async def scenario() -> list[np.ndarray]:
        batcher = _batcher(digits, metrics, max_delay_s=1.0)
        batcher.start()
        with batcher.lease():
            pending = [asyncio.create_task(batcher.score(_images(i, 1))) for i in range(4)]
            await asyncio.sleep(0)
        closing = asyncio.create_task(batcher.close())
        results = await asyncio.gather(*pending)
        await closing
        with pytest.raises(RuntimeError, match="closed"), batcher.lease():
            pass
        return list(results)

    assert [r.shape for r in asyncio.run(scenario())] == [(1,)] * 4


def test_close_scores_what_is_queued_and_ends_the_thread(digits: LoadedModel) -> None:
    metrics = Metrics()

    async def scenario() -> tuple[list[np.ndarray], set[threading.Thread]]:
        before = set(threading.enumerate())
        batcher = _batcher(digits, metrics, max_delay_s=0.5)
        batcher.start()
        assert len(set(threading.enumerate()) - before) == 1  # its own thread
        pending = [asyncio.create_task(batcher.score(_images(s, 2))) for s in range(3)]
        await asyncio.sleep(0)  # queued, and the thread is still gathering (0.5 s delay)
        await batcher.close()
        return [await p for p in pending], set(threading.enumerate()) - before

    results, left = asyncio.run(scenario())
    assert [r.shape for r in results] == [(2,)] * 3
    assert not left
    assert _samples(metrics, "deepsvdd_queue_depth") == 0


def test_the_event_loop_stays_free_while_a_batch_runs(
    digits: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow run blocks only the batcher's thread: the loop keeps ticking."""
    original = LoadedModel.run

    def slow(self: LoadedModel, images: np.ndarray) -> np.ndarray:
        time.sleep(0.3)
        return original(self, images)

    monkeypatch.setattr(LoadedModel, "run", slow)

    async def scenario() -> int:
        batcher = _batcher(digits, Metrics(), max_delay_s=0.0)
        batcher.start()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await batcher.score(_images(1, 1))
        ticker.cancel()
        await batcher.close()
        return ticks

    assert asyncio.run(scenario()) >= 10


def test_embeddings_come_with_the_jobs_that_ask_in_a_shared_batch(
    digits: LoadedModel, model_repo: ModelRepo
) -> None:
    metrics = Metrics()
    requests = [(_images(seed, count), seed % 2 == 0) for seed, count in enumerate([2, 3, 1, 4])]

    async def scenario() -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        batcher = _batcher(digits, metrics, max_batch=4)
        batcher.start()
        with batcher.lease():
            results = await asyncio.gather(
                *(
                    batcher.infer(images, frozenset({"embedding"} if wanted else ()))
                    for images, wanted in requests
                )
            )
        await batcher.close()
        return list(results)

    weights = model_repo.model("digits", 1).weights.astype(np.float64)
    for (images, wanted), (scores, extras) in zip(requests, asyncio.run(scenario()), strict=True):
        np.testing.assert_allclose(scores, digits.run(images), rtol=1e-5)
        if wanted:
            embedding = extras["embedding"]
            assert embedding.shape == (len(images), 8)
            np.testing.assert_allclose(
                embedding, images.reshape(len(images), -1) @ weights, rtol=1e-4, atol=1e-5
            )
        else:
            assert extras == {}
    # 10 images with max_batch 4: the shared batch ran in chunks of at most 4.
    assert _samples(metrics, "deepsvdd_batch_size_sum", model="digits") == 10
