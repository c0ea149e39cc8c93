"""GCN with the L1 norm and min-max scaling, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.preprocess import Preprocess, apply, fit_preprocess, gcn_l1, to_unit_tensor


def test_gcn_l1_by_hand() -> None:
    # One 1x2x2 image: mean 2.5, deviations -1.5 -0.5 0.5 1.5, mean |dev| = 1.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert gcn_l1(x).flatten().tolist() == pytest.approx([-1.5, -0.5, 0.5, 1.5])
    # Scaling an image does not change its GCN.
    assert torch.allclose(gcn_l1(3 * x), gcn_l1(x))


def test_gcn_of_constant_image_is_finite() -> None:
    assert torch.isfinite(gcn_l1(torch.full((1, 1, 4, 4), 0.7))).all()


def test_minmax_constants_by_hand() -> None:
    # Two images as uint8 pixels; /255 does not change GCN, so the values are hand-checkable.
    a = np.array([0, 0, 0, 255], np.uint8).reshape(1, 2, 2, 1)  # mean 63.75, mad 95.625
    b = np.array([10, 20, 30, 40], np.uint8).reshape(1, 2, 2, 1)  # devs -15..15, mad 10
    pre = fit_preprocess(np.concatenate([a, b]))
    assert float(pre.lo) == pytest.approx(-1.5)  # b: -15 / 10
    assert float(pre.hi) == pytest.approx(2.0)  # a: 191.25 / 95.625
    out = apply(pre, np.concatenate([a, b]))
    assert float(out.min()) == pytest.approx(0.0, abs=1e-6)
    assert float(out.max()) == pytest.approx(1.0, abs=1e-6)
    assert out[1].flatten().tolist() == pytest.approx([0.0, 1 / 3.5, 2 / 3.5, 3 / 3.5], abs=1e-6)


def test_unit_tensor_layout() -> None:
    img = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    t = to_unit_tensor(img)
    assert t.shape == (1, 3, 2, 2)
    assert float(t[0, 2, 1, 1]) == pytest.approx(11 / 255)


def test_degenerate_training_set_is_refused() -> None:
    with pytest.raises(ValueError, match="degenerate"):
        fit_preprocess(np.full((4, 2, 2, 1), 9, np.uint8))


def test_preprocess_is_a_module_with_buffers() -> None:
    pre = Preprocess(-1.0, 3.0)
    assert {n for n, _ in pre.named_buffers()} == {"lo", "hi"}
    assert not list(pre.parameters())
