"""`deepsvdd train` under `torchrun --standalone` with 2 CPU processes (gloo): the ranks agree,
rank 0 exports one model, and a failing rank ends the job without a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.calibration import holdout_size
from training.distributed import Dist

WORKER = Path(__file__).with_name("ddp_worker.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_npz(fashion_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """301 trousers (an odd count: the ranks' shards differ) and 200 test images."""
    data = np.load(fashion_subset)
    x, y = data["x_train"], data["y_train"]
    keep = np.concatenate([np.flatnonzero(y == 1)[:301], np.flatnonzero(y != 1)[:100]])
    path = tmp_path_factory.mktemp("ddp") / "small.npz"
    x_test, y_test = data["x_test"][:200], data["y_test"][:200]
    np.savez(path, x_train=x[keep], y_train=y[keep], x_test=x_test, y_test=y_test)
    return path


def torchrun(out: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(WORKER), str(out), *args]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "DEEPSVDD_DIST_TIMEOUT_S": "120", **env}
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=environ)


def train_args(data: Path, models: Path) -> list[str]:
    return [
        *("train", "--dataset", "npz", "--data-dir", str(data), "--normal-class", "1"),
        *("--objective", "soft-boundary", "--epochs", "3", "--pretrain-epochs", "1"),
        *("--batch-size", "64", "--models-dir", str(models), "--name", "ddp", "--quiet"),
    ]


def test_two_ranks_agree_and_rank0_exports_one_version(small_npz: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    proc = torchrun(tmp_path, train_args(small_npz, models))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in ranks[0]["state"].items():  # weights and BN buffers, bit for bit
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert torch.equal(ranks[0]["c"], ranks[1]["c"])
    # R on every rank is the (1 - nu) quantile over all training rows, not a shard's: the
    # 301 trousers less the thresholds' hold-out (an odd count either way).
    n_train = 301 - holdout_size(301, 0.1)
    assert ranks[0]["R"] == ranks[1]["R"] == pytest.approx(ranks[0]["R_all_rows"], rel=1e-5)
    assert ranks[0]["n_train"] == summary["n_train"] == n_train
    assert sorted(p.relative_to(models).as_posix() for p in models.rglob("model.onnx")) == [
        "ddp/1/model.onnx"
    ]
    assert not (models / "ddp" / ".checkpoint").exists()
    from modelfile.layout import open_model

    _, meta = open_model(models / "ddp" / "1" / "model.onnx")
    assert meta.training["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "batchnorm": "rank0-buffers",
    }
    assert meta.center == pytest.approx(ranks[0]["c"].tolist())


def test_a_failing_rank_ends_the_job_without_a_model(small_npz: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    proc = torchrun(tmp_path, train_args(small_npz, models), DEEPSVDD_TEST_FAIL_RANK="1")
    assert proc.returncode != 0
    # One line says why; rank 0, blocked in an all-reduce with rank 1, is either stopped by
    # torchrun or says, without a traceback, that it lost its peer.
    lines = [line for line in proc.stderr.splitlines() if line.startswith("deepsvdd train:")]
    failed = [line for line in lines if " failed: " in line]
    assert failed == [
        "deepsvdd train: error: rank 1 of 2 failed: RuntimeError: injected failure"
    ], proc.stderr[-3000:]
    assert all("rank 0 of 2 stopped: lost contact" in line for line in lines if line not in failed)
    # torchrun prints its own report (a traceback of its launcher); none from our ranks.
    frames = [line for line in proc.stderr.splitlines() if "File" in line and "/training/" in line]
    assert not frames
    assert not list(models.rglob("*.onnx"))
    assert proc.stdout.strip() == ""


def test_one_process_is_world_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.distributed import from_environment

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = from_environment("cpu")
    assert (dist.world, dist.rank, dist.active, dist.batchnorm) == (1, 0, False, "local")
    values = torch.tensor([1.0, 2.0])
    assert torch.equal(dist.gather(values), values)
    assert dist.min_max(-1.0, 3.0) == (-1.0, 3.0)
    assert dist.shard(torch.arange(5)).tolist() == [0, 1, 2, 3, 4]


def test_shards_of_a_batch_cover_it_once() -> None:
    batch = torch.arange(11)
    parts = [Dist(rank=r, world=3).shard(batch) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == list(range(11))
    assert [len(p) for p in parts] == [4, 4, 3]
