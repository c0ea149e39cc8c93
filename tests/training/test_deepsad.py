"""Deep SAD on tiny data: the loss as written in the paper, labelled anomalies pushed out,
no collapse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import TrainConfig
from training.deepsvdd import SAD_EPS, deepsad_loss, embed, score
from training.networks import make_config
from training.pipeline import fit


def test_deepsad_loss_matches_the_formula() -> None:
    dist = torch.tensor([1.0, 4.0, 0.5, 2.0])
    semi = torch.tensor([0.0, 0.0, 1.0, -1.0])
    expected = (1.0 + 4.0 + (0.5 + SAD_EPS) + 1 / (2.0 + SAD_EPS)) / 4
    assert float(deepsad_loss(dist, semi)) == pytest.approx(expected)
    # Without labels it is the one-class loss.
    assert float(deepsad_loss(dist, torch.zeros(4))) == pytest.approx(float(dist.mean()))


def blobs(n: int, bright: bool, seed: int) -> torch.Tensor:
    """(n, 1, 28, 28): soft noise; `bright` ones carry a square, like a defect."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=gen) * 0.3
    if bright:
        x[:, :, 8:16, 8:16] += 1.0
    return x


def test_labelled_anomalies_are_pushed_out_and_the_net_is_not_constant() -> None:
    net_cfg = make_config("mnist", 1, 28, 28, 0.1)
    cfg = TrainConfig(epochs=8, pretrain=False, batch_size=32, lr=1e-3, seed=0)
    normal, anomalies = blobs(96, False, 0), blobs(16, True, 1)
    svdd, _ = fit(net_cfg, normal, cfg, None, False)
    semi = torch.cat([torch.zeros(96), -torch.ones(16)])
    sad, _ = fit(net_cfg, torch.cat([normal, anomalies]), cfg, None, False, semi_targets=semi)
    # Same seed, same initial network: the same centre, from the normal images alone.
    assert torch.allclose(svdd.c, sad.c)
    sad_scores, svdd_scores = score(sad.net, sad.c, anomalies), score(svdd.net, svdd.c, anomalies)
    assert float(sad_scores.mean()) > float(svdd_scores.mean())
    ratio_sad = sad_scores.mean() / score(sad.net, sad.c, normal).mean()
    ratio_svdd = svdd_scores.mean() / score(svdd.net, svdd.c, normal).mean()
    assert float(ratio_sad) > float(ratio_svdd)
    embeddings = embed(sad.net, blobs(8, False, 2))
    assert float(embeddings.std(dim=0).max()) > 1e-4  # not constant


def test_npz_anomalies_labelled_minus_one_are_picked_by_label(tmp_path: Path) -> None:
    from cli.main import build_parser
    from training.data import load_dataset
    from training.labelled import parse_classes, pick_labelled

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (60, 28, 28), dtype=np.uint8)
    y = np.array([0] * 40 + [-1] * 20)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    data = load_dataset("npz", tmp_path / "d.npz")
    args = build_parser().parse_args(
        ["train", "--dataset", "npz", "--normal-class", "0", "--anomaly-classes", "-1"]
    )
    normal = data.class_names.index("0")
    labelled = pick_labelled(data, normal, parse_classes(args.anomaly_classes), 0.5, seed=0)
    assert labelled is not None and labelled.classes == ["-1"]
    assert labelled.record()["n_labelled_anomalies"] == 10 == len(labelled.x)
    # Every picked image is one of the -1 images, none a normal one.
    anomalies = {row.tobytes() for row in x[40:]}
    assert all(img[..., 0].tobytes() in anomalies for img in labelled.x)
    assert pick_labelled(data, normal, (), 0.5, seed=0) is None
