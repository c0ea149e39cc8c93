"""Objectives and training loops: nu-property, non-constant scores, seeds, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpoint import Checkpointer, CheckpointError
from training.config import TrainConfig
from training.deepsvdd import get_radius, score, sq_dist, svdd_loss
from training.networks import make_config
from training.pipeline import fit
from training.preprocess import apply, fit_preprocess

NET = make_config("mnist", 1, 28, 28)


@pytest.fixture(scope="module")
def trousers(fashion_subset: Path) -> torch.Tensor:
    data = np.load(fashion_subset)
    normal = data["x_train"][data["y_train"] == 1][:, :, :, None]
    return apply(fit_preprocess(normal), normal)


def test_radius_is_the_1_minus_nu_quantile() -> None:
    dist = torch.arange(1, 101, dtype=torch.float32) ** 2  # sqrt: 1..100
    assert get_radius(dist, 0.1) == pytest.approx(90.1, abs=1e-3)


def test_soft_boundary_loss_by_hand() -> None:
    dist = torch.tensor([1.0, 4.0, 9.0, 16.0])
    # R = 2: slacks 0, 0, 5, 12 -> R^2 + mean / nu = 4 + 4.25 / 0.5
    assert float(svdd_loss(dist, "soft-boundary", 2.0, 0.5)) == pytest.approx(12.5)
    assert float(svdd_loss(dist, "one-class", 2.0, 0.5)) == pytest.approx(7.5)


@pytest.mark.parametrize("nu", [0.05, 0.2])
def test_nu_property_after_soft_boundary_training(trousers: torch.Tensor, nu: float) -> None:
    cfg = TrainConfig(objective="soft-boundary", nu=nu, epochs=6, warm_up_epochs=2, pretrain=False)
    state, _ = fit(NET, trousers, cfg, None, progress=False)
    assert state.R is not None and state.R > 0
    dist = score(state.net, state.c, trousers)
    outside = float((dist > state.R**2).float().mean())
    on_or_outside = float((dist >= state.R**2 - 1e-6).float().mean())
    assert outside <= nu + 0.01
    assert on_or_outside >= nu - 0.01


def test_trained_scores_are_not_constant(trousers: torch.Tensor) -> None:
    cfg = TrainConfig(epochs=4, pretrain=False)
    state, _ = fit(NET, trousers, cfg, None, progress=False)
    scores = score(state.net, state.c, trousers)
    assert float(scores.std()) > 1e-4 * float(scores.mean())
    assert len(torch.unique(scores)) > len(scores) // 2
    assert state.R is None


def test_seeded_runs_are_reproducible(trousers: torch.Tensor) -> None:
    cfg = TrainConfig(epochs=2, pretrain=True, pretrain_epochs=1, seed=3)
    a, _ = fit(NET, trousers[:400], cfg, None, progress=False)
    b, _ = fit(NET, trousers[:400], TrainConfig(**{**cfg.__dict__}), None, progress=False)
    assert torch.equal(a.c, b.c)
    for (name, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_phase", ["pretrain", "train"])
def test_resume_after_crash_matches_uninterrupted_run(
    trousers: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_phase: str
) -> None:
    x = trousers[:400]
    cfg = TrainConfig(epochs=4, pretrain=True, pretrain_epochs=4, seed=1)
    whole, _ = fit(NET, x, cfg, None, progress=False)

    path = tmp_path / "ckpt.pt"
    original = Checkpointer.save

    def save_then_crash(self: Checkpointer, state: dict) -> None:
        original(self, state)
        if state["phase"] == crash_phase and state["epoch"] == 2:
            raise Crash

    monkeypatch.setattr(Checkpointer, "save", save_then_crash)
    with pytest.raises(Crash):
        fit(NET, x, cfg, Checkpointer(path, {"run": 1}, every=1), progress=False)
    monkeypatch.setattr(Checkpointer, "save", original)

    ckpt = Checkpointer(path, {"run": 1}, every=1, resume=True)
    assert ckpt.phase == crash_phase
    resumed, _ = fit(NET, x, cfg, ckpt, progress=False)
    assert torch.allclose(resumed.c, whole.c)
    assert torch.allclose(score(resumed.net, resumed.c, x), score(whole.net, whole.c, x), rtol=1e-5)


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    Checkpointer(path, {"run": 1}).save({"phase": "train", "epoch": 1})
    with pytest.raises(CheckpointError, match="other data or settings"):
        Checkpointer(path, {"run": 2}, resume=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        Checkpointer(path, {"run": 1}, resume=True)


def test_bad_hyper_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="nu"):
        TrainConfig(nu=0.0)
    with pytest.raises(ValueError, match="nu"):
        TrainConfig(nu=1.5)
    with pytest.raises(ValueError, match="batch"):
        TrainConfig(batch_size=0)


def test_sq_dist_shape() -> None:
    z = torch.ones(5, 3)
    assert sq_dist(z, torch.zeros(3)).tolist() == [3.0] * 5
