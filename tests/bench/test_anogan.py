"""AnoGAN on tiny data: shapes, seeding, the latent search and the score's direction."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.table1_anogan.anogan import (
    AnoGAN,
    AnoGANConfig,
    Discriminator,
    Generator,
    anomaly_score,
    search_loss,
    train_anogan,
)

TINY = AnoGANConfig(width=8, epochs=40, batch_size=16, search_steps=40, search_lr=0.05)


def normal_images(n: int, seed: int) -> torch.Tensor:
    """(n, 1, 28, 28): a bright vertical bar on a dark ground, slightly shifted and noisy."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1, 28, 28), 0.1)
    for i in range(n):
        left = 11 + int(torch.randint(-1, 2, (1,), generator=gen))
        x[i, :, 4:24, left : left + 6] = 0.9
    return (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def outlier_images(n: int, seed: int) -> torch.Tensor:
    """(n, 1, 28, 28): a horizontal bar instead, on a bright ground."""
    return 1 - normal_images(n, seed).transpose(2, 3)


@pytest.fixture(scope="module")
def trained() -> tuple[torch.Tensor, AnoGAN]:
    x = normal_images(64, 0)
    return x, train_anogan(x, TINY)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_networks_map_latent_codes_to_images_and_back(channels: int, size: int) -> None:
    cfg = AnoGANConfig(width=4)
    g, d = Generator(channels, size, cfg).eval(), Discriminator(channels, size, cfg).eval()
    with torch.no_grad():
        fake = g(torch.randn(3, cfg.latent_dim))
    assert fake.shape == (3, channels, size, size)
    assert float(fake.min()) >= 0.0 and float(fake.max()) <= 1.0
    with torch.no_grad():
        assert d(fake).shape == (3,) and d.features(fake).shape[0] == 3


def test_shapes_and_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        Generator(1, 30, AnoGANConfig())
    with pytest.raises(ValueError, match="square"):
        train_anogan(torch.rand(4, 1, 28, 32), AnoGANConfig(epochs=1))
    with pytest.raises(ValueError, match="lam"):
        AnoGANConfig(lam=1.5)
    with pytest.raises(ValueError, match="search_steps"):
        AnoGANConfig(search_steps=-1)


def test_scores_are_finite_and_higher_for_outliers(trained: tuple[torch.Tensor, AnoGAN]) -> None:
    _, model = trained
    inliers, outliers = normal_images(12, 1), outlier_images(12, 2)
    scores = anomaly_score(model, torch.cat([inliers, outliers]))
    assert scores.shape == (24,) and np.isfinite(scores).all()
    assert scores[12:].min() > scores[:12].max()


def test_training_and_scoring_are_seeded(trained: tuple[torch.Tensor, AnoGAN]) -> None:
    x, _ = trained
    cfg = replace(TINY, epochs=2, search_steps=5)
    a = anomaly_score(train_anogan(x, cfg), x[:6])
    b = anomaly_score(train_anogan(x, cfg), x[:6])
    other = replace(cfg, seed=1)
    c = anomaly_score(train_anogan(x, other), x[:6])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_a_score_does_not_depend_on_its_batch(trained: tuple[torch.Tensor, AnoGAN]) -> None:
    x, model = trained
    together = anomaly_score(model, x[:10])
    model.cfg = replace(TINY, search_batch=3)
    try:
        apart = anomaly_score(model, x[:10])
    finally:
        model.cfg = TINY
    # A batch leaking into a score (BatchNorm in training mode, a loss summed over the batch)
    # moves it by percents. Kernels that sum in another order for another batch size move it by
    # ~1e-6, which the latent search's steps grow to ~3e-4 on AVX2-only CPUs (AMD EPYC).
    np.testing.assert_allclose(together, apart, rtol=2e-3)


def test_the_search_lowers_the_loss_it_reports(trained: tuple[torch.Tensor, AnoGAN]) -> None:
    x, model = trained
    z0 = torch.randn(8, TINY.latent_dim, generator=torch.Generator().manual_seed(TINY.seed))
    with torch.no_grad():
        start = search_loss(model, x[:8], z0).numpy()
    searched = anomaly_score(model, x[:8])
    assert (searched < start).all()
    # The generator's weights are left trainable and unchanged by the search.
    assert all(p.requires_grad for p in model.generator.parameters())
