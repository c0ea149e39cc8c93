"""The patch encoder's synthetic-anomaly objective on tiny data: what is planted where, the
per-patch targets' orientation, and that training by it lowers its loss and moves the
encoder away from its random start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.training.test_patch import PATCH, SIZE, TINY, textures
from training.patch.fit import standardise_from, train_patch_encoder
from training.patch.network import PatchEncoder, PatchNetConfig, grid_shape
from training.patch.sampling import geometry
from training.patch.synthetic import (
    TRAIN_CROP,
    UNTOUCHED,
    AnomalyHeads,
    patch_targets,
    plant,
    random_crop,
)


def test_plant_replaces_only_the_masked_pixels_of_most_images() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 64, 64)
    planted, mask = plant(x, gen)
    assert mask.shape == (64, 1, 64, 64) and set(mask.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(planted * (1 - mask), x * (1 - mask))
    touched = mask.flatten(1).amax(dim=1) > 0
    assert 0.6 < float(touched.float().mean()) < 1.0 - UNTOUCHED / 3
    changed = ((planted - x).abs() * mask).flatten(1).sum(dim=1)
    assert bool((changed[touched] > 0).all())
    covered = mask.flatten(1).mean(dim=1)[touched]
    assert float(covered.max()) < 0.25  # a local region, never most of the image


def test_plant_is_reproducible_from_its_generator() -> None:
    x = torch.randn(8, 3, 48, 48)
    first = plant(x, torch.Generator().manual_seed(3))
    again = plant(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first[0], again[0])
    torch.testing.assert_close(first[1], again[1])


def test_targets_mark_the_patches_over_the_mask_top_left_stays_top_left() -> None:
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., 2:6, 3:7] = 1.0  # top-left corner
    grid = grid_shape(SIZE, SIZE, PATCH)
    target = patch_targets(mask, PATCH, grid)[0, 0]
    assert target.shape == grid and target[0, 0] == 1.0
    assert target[-1, -1] == 0.0 and target[0, -1] == 0.0 and target[-1, 0] == 0.0
    # a patch 4 px right of the corner one still holds the region's last 3 columns
    assert target[0, 1] == 1.0


def test_images_larger_than_the_training_crop_train_on_a_crop() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 200 * 150, dtype=torch.float32).reshape(2, 1, 200, 150)
    out = random_crop(x, gen)
    assert out.shape == (2, 1, TRAIN_CROP, TRAIN_CROP)
    assert random_crop(x[..., :40, :40], gen).shape == (2, 1, 40, 40)


def test_training_by_synthetic_anomalies_lowers_the_loss_and_moves_the_encoder() -> None:
    images = textures(32)
    pre = standardise_from(images)
    geo = geometry(PATCH, SIZE)
    start = train_patch_encoder(TINY, images, pre, geo, 0, 0, "cpu", False)
    fit = train_patch_encoder(TINY, images, pre, geo, 8, 0, "cpu", False, "synthetic")
    assert len(fit.losses) == 8 and all(np.isfinite(fit.losses))
    assert fit.position_accuracy is None and not fit.encoder.training
    assert np.mean(fit.losses[-3:]) < fit.losses[0]
    trained = dict(fit.encoder.named_parameters())
    moved = [
        float((p - trained[name]).detach().abs().max())
        for name, p in start.encoder.named_parameters()
    ]
    assert min(moved) > 0.0


def test_the_heads_score_every_scale_of_a_two_scale_encoder() -> None:
    encoder = PatchEncoder(PatchNetConfig(channels=1, patch_size=24, widths=(8, 16), dim=16))
    heads = AnomalyHeads(encoder)
    assert heads.sizes == [16, 24] and len(heads.convs) == 2
    x, mask = plant(torch.randn(4, 1, SIZE, SIZE), torch.Generator().manual_seed(1))
    loss = heads.loss(encoder.scales(x), mask)
    loss.backward()
    assert torch.isfinite(loss) and all(c.weight.grad is not None for c in heads.convs)


def test_an_unknown_objective_is_named() -> None:
    images = textures(16)
    with pytest.raises(ValueError, match="unknown patch objective 'jigsaw'"):
        train_patch_encoder(
            TINY,
            images,
            standardise_from(images),
            geometry(PATCH, SIZE),
            1,
            0,
            "cpu",
            False,
            "jigsaw",
        )
