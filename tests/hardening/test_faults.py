"""Faults: broken or vanished model files and directories, a failing ONNX Runtime run, and a
full disk or a crash while a model is exported next to a running service.

What must hold: the models already loaded keep serving, every failure is reported (reload
answer, log, `deepsvdd_model_load_failures_total`), and no half-written model is ever loaded.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.repository import LoadedModel
from service.settings import Settings
from tests.support.http import check_error
from tests.support.images import files
from tests.support.metrics import metric_value, metric_value_or_zero
from tests.support.models import ModelRepo
from tests.support.processes import ROOT
from tests.support.servers import ADMIN_TOKEN, AUTH, LiveServer, make_settings, running_server

CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "garbage": lambda data: np.random.default_rng(0).bytes(len(data)),
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "header_only": lambda data: data[:64],
}


@pytest.fixture
def live(repo: ModelRepo) -> Iterator[LiveServer]:
    settings = make_settings(repo.path, admin_token=ADMIN_TOKEN, max_delay_ms=5)
    with running_server(settings) as server:
        yield server


def _score(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.post("/score", params=params, files=files(1))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_broken_file_keeps_the_loaded_model_serving(
    live: LiveServer, repo: ModelRepo, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = repo.path / "digits" / "2" / "model.onnx"
    with live.client() as client:
        before = _score(client)
        # The first refusal creates the counter's `digits` series.
        failures_before = metric_value_or_zero(
            client.get("/metrics").text, "deepsvdd_model_load_failures_total", model="digits"
        )
        path.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
        with caplog.at_level(logging.ERROR, logger="service"):
            reload = client.post("/admin/reload", headers=AUTH)
        after = _score(client)
        metrics = client.get("/metrics").text
        listed = client.get("/models").json()
    assert reload.status_code == 200
    (failure,) = reload.json()["failures"]
    assert (failure["model"], failure["version"]) == ("digits", "2")
    assert "keeps serving" in failure["reason"] and str(repo.path) not in reload.text
    assert {(m["name"], m["version"]) for m in reload.json()["loaded"]} == {
        ("digits", 1),
        ("digits", 2),
    }
    assert after["version"] == before["version"] == 2
    assert after["results"][0]["score"] == before["results"][0]["score"]
    failures = metric_value(metrics, "deepsvdd_model_load_failures_total", model="digits")
    assert failures == failures_before + 1
    assert metric_value(metrics, "deepsvdd_model_ready", model="digits") == 1
    assert any("digits" in r.getMessage() and r.levelno >= logging.ERROR for r in caplog.records)
    # /models says it too, and still lists the version that keeps serving.
    assert listed["refused"] == reload.json()["failures"]
    assert [m["latest_version"] for m in listed["models"] if m["name"] == "digits"] == [2]


def test_a_deleted_file_retires_its_version_without_failing_a_request(
    live: LiveServer, repo: ModelRepo
) -> None:
    """Deleting model.onnx is how a version is taken out (as in Triton): not a failure."""
    stop = threading.Event()
    statuses: list[int] = []

    def hammer() -> None:
        with live.client() as client:
            while not stop.is_set():
                statuses.append(client.post("/score", files=files(2)).status_code)

    def answered_at_least(n: int) -> None:
        deadline = time.monotonic() + 30
        while len(statuses) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    with ThreadPoolExecutor(3) as pool, live.client() as client:
        running = [pool.submit(hammer) for _ in range(3)]
        answered_at_least(3)  # requests are in flight before the version goes
        (repo.path / "digits" / "2" / "model.onnx").unlink()
        reload = client.post("/admin/reload", headers=AUTH)
        after = _score(client)
        answered_at_least(len(statuses) + 3)  # and they go on after the reload
        stop.set()
        for future in running:
            future.result()
    assert reload.status_code == 200 and reload.json()["failures"] == []
    assert after["version"] == 1
    assert statuses and set(statuses) == {200}


def test_a_half_written_version_is_ignored_until_it_is_complete(
    live: LiveServer, repo: ModelRepo
) -> None:
    version_dir = repo.path / "digits" / "3"
    version_dir.mkdir()
    complete = (repo.path / "digits" / "2" / "model.onnx").read_bytes()
    (version_dir / "model.onnx.tmp").write_bytes(complete[: len(complete) // 3])
    (version_dir / f".model.onnx.{os.getpid()}.tmp").write_bytes(complete[:100])
    with live.client() as client:
        reload = client.post("/admin/reload", headers=AUTH)
        assert reload.status_code == 200 and reload.json()["failures"] == []
        assert _score(client)["version"] == 2
        os.replace(version_dir / "model.onnx.tmp", version_dir / "model.onnx")
        reload = client.post("/admin/reload", headers=AUTH)
    (failure,) = reload.json()["failures"]  # the rename of a partial file is refused
    assert (failure["model"], failure["version"]) == ("digits", "3")


def test_a_vanished_models_directory_keeps_the_loaded_models(
    live: LiveServer, repo: ModelRepo, caplog: pytest.LogCaptureFixture
) -> None:
    moved = repo.path.with_name("moved-away")
    with live.client() as client:
        repo.path.rename(moved)
        with caplog.at_level(logging.ERROR, logger="service"):
            reload = client.post("/admin/reload", headers=AUTH)
        assert reload.status_code == 500
        assert check_error(reload, repo.path, moved)["code"] == "reload_failed"
        assert _score(client)["version"] == 2
        moved.rename(repo.path)
        assert client.post("/admin/reload", headers=AUTH).status_code == 200
    assert any("reload refused" in r.getMessage() for r in caplog.records)


def test_a_missing_models_directory_at_start_is_one_clear_line(tmp_path: Path) -> None:
    absent = tmp_path / "nope"
    with pytest.raises(ValueError, match=r"models_dir .* is not a directory"):
        Settings(models_dir=absent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSVDD_")}
    commands = {
        "python -m service": (
            [sys.executable, "-m", "service"],
            {"DEEPSVDD_MODELS_DIR": str(absent)},
        ),
        "deepsvdd serve": (
            [sys.executable, "-m", "cli", "serve", "--models-dir", str(absent)],
            {},
        ),
    }
    for what, (command, extra) in commands.items():
        done = subprocess.run(
            command, cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, timeout=60
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0, what
        assert len(lines) == 1, (what, done.stderr)
        assert "models_dir" in lines[0] and str(absent) in lines[0], (what, lines[0])
        assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_failed_inference_run_fails_its_batch_and_frees_the_queue(
    repo: ModelRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent requests (sharing runs) each get the error; nothing stays queued."""
    settings = make_settings(repo.path, max_delay_ms=100, max_batch=64)
    original = LoadedModel.run
    broken = threading.Event()
    broken.set()

    def flaky(self: LoadedModel, images: np.ndarray) -> np.ndarray:
        if broken.is_set():
            raise RuntimeError(f"simulated ONNX Runtime failure in {repo.path}")
        return original(self, images)

    monkeypatch.setattr(LoadedModel, "run", flaky)
    with running_server(settings) as live, live.client() as client:
        with ThreadPoolExecutor(3) as pool:
            failed = list(pool.map(lambda s: client.post("/score", files=files(s)), range(3)))
        metrics = client.get("/metrics").text
        broken.clear()
        assert _score(client)["version"] == 2
    for response in failed:
        assert response.status_code == 500
        assert check_error(response, repo.path)["code"] == "inference_failed"
        assert "simulated" not in response.text
    assert metric_value(metrics, "deepsvdd_queue_depth") == 0
    # Only a run that answered is observed: none did, so there may be no `digits` series.
    assert metric_value_or_zero(metrics, "deepsvdd_batch_size_count", model="digits") == 0


# --- a full disk or a crash while exporting (training.export) ---


@pytest.fixture(scope="module")
def scoring_model() -> Any:
    torch = pytest.importorskip("torch")
    from training.export import ScoringModel
    from training.networks import Encoder, make_config
    from training.preprocess import Preprocess

    torch.manual_seed(0)
    encoder = Encoder(make_config("mnist", 1, 28, 28))
    return ScoringModel(Preprocess(-1.0, 6.0), encoder, torch.full((32,), 0.5)).eval()


def _export(scoring_model: Any, models_dir: Path) -> tuple[Path, Path]:
    """Claims `models_dir/m/<next>` and exports into it; returns (version dir, model path)."""
    import torch

    from modelfile.layout import claim_version
    from modelfile.metadata import DatasetInfo, InputSpec, ModelMetadata
    from training.export import export_model

    version, version_dir = claim_version(models_dir / "m")
    meta = ModelMetadata(
        name="m",
        version=version,
        created="2026-01-01T00:00:00+00:00",
        objective="one-class",
        nu=0.1,
        center=[0.5] * 32,
        radius=None,
        thresholds={"q0.95": 1.0},
        default_threshold="q0.95",
        input=InputSpec(channels=1, height=28, width=28, color="L"),
        dataset=DatasetInfo(name="npz", normal_class=0, n_train=10),
    )
    path, _ = export_model(scoring_model, meta, version_dir, torch.rand(4, 1, 28, 28))
    return version_dir, path


def _disk_full(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device")


class _FullFile(io.FileIO):
    """A file on a full disk: half of the first write lands, then ENOSPC."""

    def write(self, data: Any) -> int:
        super().write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["write", "fsync", "replace_model", "replace_config"])
def test_a_failed_export_leaves_no_model_visible(
    scoring_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    from modelfile import layout

    models_dir = tmp_path / "models"
    seen_at_failure: list[list[Path]] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == {"replace_model": "model.onnx"}.get(fault, "config.pbtxt"):
            seen_at_failure.append(sorted(models_dir.rglob("model.onnx")))
            _disk_full()
        real_replace(src, dst)

    if fault == "write":
        monkeypatch.setattr(layout, "open", _FullFile, raising=False)
    elif fault == "fsync":
        monkeypatch.setattr(layout.os, "fsync", _disk_full)
    else:
        monkeypatch.setattr(layout.os, "replace", replace)
    with pytest.raises(OSError) as raised:
        _export(scoring_model, models_dir)
    assert raised.value.errno == errno.ENOSPC
    assert list(models_dir.rglob("model.onnx")) == []
    assert [p for p in models_dir.rglob("*") if p.name.endswith(".tmp")] == []
    assert not (models_dir / "m" / "1").exists()
    # Even while it was failing, no model.onnx was in place (the config goes first).
    assert all(found == [] for found in seen_at_failure)


@pytest.mark.slow
def test_a_reload_during_an_export_never_loads_a_partial_file(
    live: LiveServer, repo: ModelRepo, scoring_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelfile import layout

    writing, finish = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".model.onnx"):
            writing.set()  # the temporary file is written, not yet renamed
            assert finish.wait(timeout=60)
        real_fsync(fd)

    monkeypatch.setattr(layout.os, "fsync", slow_fsync)
    with ThreadPoolExecutor(1) as pool, live.client() as client:
        exported = pool.submit(_export, scoring_model, repo.path)
        assert writing.wait(timeout=120)
        partial = [p.name for p in (repo.path / "m" / "1").iterdir()]
        during = client.post("/admin/reload", headers=AUTH)
        finish.set()
        version_dir, path = exported.result(timeout=60)
        after = client.post("/admin/reload", headers=AUTH)
        scored = client.post("/score", params={"model": "m"}, files=files(3))
    assert len(partial) == 1 and partial[0].endswith(".tmp")
    assert during.status_code == 200 and during.json()["failures"] == []
    assert "m" not in {m["name"] for m in during.json()["loaded"]}
    assert path == version_dir / "model.onnx"
    assert after.json()["failures"] == [] and ("m", 1) in {
        (m["name"], m["version"]) for m in after.json()["loaded"]
    }
    assert scored.status_code == 200 and scored.json()["version"] == 1
