"""Collapse guards of section 3.3: no bias, no affine BatchNorm, c away from zero."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from training.deepsvdd import C_EPS, init_center_c
from training.networks import ARCHITECTURES, Autoencoder, Encoder, make_config

SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "gtsrb": (3, 32, 32)}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_no_bias_anywhere(arch: str) -> None:
    ae = Autoencoder(make_config(arch, *SHAPES[arch]))
    for name, param in ae.named_parameters():
        assert "bias" not in name, name
        assert param.dim() > 1, f"{name} is shaped like a bias: {tuple(param.shape)}"
    for module in ae.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            assert module.bias is None


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_batchnorm_has_no_affine_parameters(arch: str) -> None:
    net = Encoder(make_config(arch, *SHAPES[arch]))
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == len(ARCHITECTURES[arch][0])
    for bn in bns:
        assert not bn.affine and bn.weight is None and bn.bias is None
        assert bn.eps == pytest.approx(1e-4)


def test_paper_shapes() -> None:
    assert Encoder(make_config("mnist", 1, 28, 28)).fc.in_features == 4 * 7 * 7
    x = torch.rand(3, 3, 32, 32)
    assert Encoder(make_config("cifar10", 3, 32, 32))(x).shape == (3, 128)
    assert Encoder(make_config("gtsrb", 3, 32, 32))(x).shape == (3, 32)
    assert Autoencoder(make_config("cifar10", 3, 32, 32))(x).shape == x.shape


def test_no_bounded_activation_in_encoder() -> None:
    net = Encoder(make_config("mnist", 1, 28, 28))
    x = torch.randn(16, 1, 28, 28) * 50
    z = net.eval()(x)
    assert z.abs().max() > 1.0  # a sigmoid or tanh would bound it


@pytest.mark.parametrize("size", [30, 27, 2])
def test_image_size_the_network_cannot_take(size: int) -> None:
    with pytest.raises(ValueError, match=r"does not fit|smaller"):
        make_config("cifar10", 3, size, size)


def test_center_coordinates_pushed_beyond_eps() -> None:
    torch.manual_seed(0)
    net = Encoder(make_config("mnist", 1, 28, 28))
    with torch.no_grad():
        net.fc.weight.mul_(1e-4)  # outputs near zero: every coordinate needs the guard
    c = init_center_c(net, torch.rand(64, 1, 28, 28))
    assert (c.abs() >= C_EPS - 1e-7).all()
    assert ((c == C_EPS) | (c == -C_EPS) | (c.abs() > C_EPS)).all()


def test_activation_after_the_pool_equals_the_textbook_order() -> None:
    torch.manual_seed(0)
    net = Encoder(make_config("mnist", 1, 28, 28)).train()
    x = torch.randn(16, 1, 28, 28, requires_grad=True)
    textbook = x
    for conv, bn in zip(net.convs, net.bns, strict=True):
        textbook = F.max_pool2d(F.leaky_relu(bn(conv(textbook)), 0.1), 2)
    textbook = net.fc(textbook.flatten(1))
    (grad_ref,) = torch.autograd.grad(textbook.sum(), x)
    ours = net(x)
    (grad,) = torch.autograd.grad(ours.sum(), x)
    assert torch.equal(ours, textbook)
    assert torch.equal(grad, grad_ref)
