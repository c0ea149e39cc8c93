"""bench/train_speed's precision variants: every (phase, variant) is timed with the settings it
names, and the patch model's rebuilt step trains in bf16 with fp32 parameters."""

from __future__ import annotations

import numpy as np
import torch

from bench.train_speed.patch_variants import PatchStep, patch_images
from bench.train_speed.precision import table
from bench.train_speed.variants import VARIANTS, config_of, epochs_for, measure_network
from training.patch.fit import standardise_from, to_batch


def test_every_phase_and_variant_is_timed() -> None:
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    points = measure_network("mnist", images, 0.01, "cpu", say=False)
    assert [(p.phase, p.variant) for p in points] == [
        (phase, label) for phase in ("DCAE", "Deep SVDD") for label, _, _ in VARIANTS
    ]
    assert all(p.per_s > 0 and p.per_cpu_s > 0 and p.epochs >= 1 for p in points)
    rows = table(points, "per_cpu_s")
    assert len(rows) == 2 + 2 and "(1.00x)" in rows[2]
    assert len({row.count("|") for row in rows}) == 1  # every row has the header's columns


def test_epochs_fill_the_target_within_bounds() -> None:
    assert epochs_for(0.5, 50, 3.0) == 6  # 0.5 s an epoch of 50 images
    assert epochs_for(10.0, 50, 3.0) == 1
    assert epochs_for(0.0, 50, 3.0) == 50


def test_the_patch_step_trains_in_bf16_with_fp32_parameters() -> None:
    images = patch_images(2)
    step = PatchStep(config_of("bf16", True, 1), torch.device("cpu"))
    before = [p.detach().clone() for p in step.encoder.parameters()]
    dtypes: list[torch.dtype] = []
    step.encoder.features.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    step(to_batch(images, np.arange(2), standardise_from(images), "cpu"))
    assert dtypes == [torch.bfloat16]
    after = list(step.encoder.parameters())
    assert all(p.dtype == torch.float32 for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
