"""The variants beyond the paper on tiny data: rotation pretraining, a centre per
transformation, an ensemble of seeds in one graph.

Each variant must train a network that is not constant, export as one ONNX file whose
scores equal PyTorch's within 1e-4, and be served by the service unchanged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from modelfile.metadata import ModelMetadata
from training.batches import TensorImages
from training.config import TRANSFORM_SETS, RunSpec, TrainConfig
from training.deepsvdd import embed, score, sq_dist
from training.ensemble import Ensemble, combine, member_configs
from training.networks import Encoder, make_config
from training.pipeline import fit, train_and_export
from training.pretext import TransformClassifier, pretrain_rotation, transform_accuracy
from training.transforms import (
    MultiView,
    Transforms,
    check_transforms,
    transform,
    with_transforms,
)

NET = make_config("mnist", 1, 28, 28)
# (name, TrainConfig overrides): the variants bench/beyond measures.
VARIANTS: dict[str, dict[str, Any]] = {
    "rotation-pretrain": {"pretrain_task": "rotation"},
    "transform-centres": {"pretrain": False, "transforms": "rotations"},
    "rotation+centres": {"pretrain_task": "rotation", "transforms": "rotations"},
    "rotation-flips+centres": {"pretrain_task": "rotation", "transforms": "rotations-flips"},
}
# Exported as well: an ensemble of two seeds, of a centre-per-rotation variant.
EXPORTED: dict[str, dict[str, Any]] = {
    **VARIANTS,
    "ensemble": {"ensemble": 2, "pretrain": False, "transforms": "rotations"},
    "mixed": {"members": ("dcae:identity", "none:rotations")},
}


def trousers(fashion_subset: Path, n: int) -> torch.Tensor:
    data = np.load(fashion_subset)
    x = data["x_train"][data["y_train"] == 1][:n]
    return torch.from_numpy(x[:, None].astype(np.float32) / 255.0)


def test_transforms_are_quarter_turns_and_mirrors() -> None:
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    for turns in range(4):
        for flip in (False, True):
            want = np.rot90(x.numpy(), turns, axes=(2, 3))
            want = want[..., ::-1] if flip else want
            np.testing.assert_array_equal(transform(x, turns, flip).numpy(), want)
    t = Transforms("rotations-flips")
    out = t(x)
    assert out.shape == (16, 1, 3, 3) and len(t) == 8
    assert torch.equal(out[:2], x)  # the identity first, transformation-major
    assert t.labels(2, x.device).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    # The eight transformations of an asymmetric image are eight different images.
    assert len({img.numpy().tobytes() for img in out[::2]}) == 8


def test_non_square_images_and_unknown_sets_are_refused_with_the_reason() -> None:
    check_transforms("identity", 28, 32)
    with pytest.raises(ValueError, match="needs square images; these are 28x32"):
        check_transforms("rotations", 28, 32)
    with pytest.raises(ValueError, match="unknown transforms 'spin'"):
        check_transforms("spin", 28, 28)
    with pytest.raises(ValueError, match="unknown transforms"):
        TrainConfig(transforms="spin")
    with pytest.raises(ValueError, match="unknown pretraining"):
        TrainConfig(pretrain_task="jigsaw")  # type: ignore[arg-type]


def test_multiview_places_each_transformation_beside_the_others() -> None:
    torch.manual_seed(0)
    encoder = Encoder(NET).eval()
    view = MultiView(encoder, "rotations").eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        z = view(x)
        assert z.shape == (5, 4 * NET.rep_dim) and view.out_dim == 4 * NET.rep_dim
        for k, (turns, flip) in enumerate(TRANSFORM_SETS["rotations"]):
            block = z[:, k * NET.rep_dim : (k + 1) * NET.rep_dim]
            torch.testing.assert_close(block, encoder(transform(x, turns, flip)))
        # The squared distance to the stacked centres is the sum of the per-transform ones.
        c = torch.randn(4 * NET.rep_dim)
        blocks = z.view(5, 4, -1) - c.view(4, -1)
        torch.testing.assert_close(sq_dist(z, c), (blocks**2).sum(dim=(1, 2)))
    assert with_transforms(encoder, "identity") is encoder


def test_rotation_pretraining_learns_to_tell_the_turns_apart(fashion_subset: Path) -> None:
    x = trousers(fashion_subset, 192)
    cfg = TrainConfig(pretrain_task="rotation", pretrain_epochs=4, batch_size=32, seed=0)
    encoder, history, _ = pretrain_rotation(NET, x, cfg)
    assert history[-1] < history[0]
    probe = TransformClassifier(NET, "rotations")
    probe.encoder.load_state_dict(encoder.state_dict())
    untrained = transform_accuracy(probe, x[:64])
    # A fresh head cannot say much; retraining only the head on the frozen encoder can.
    head = torch.optim.Adam(probe.head.parameters(), lr=1e-2)
    for _ in range(60):
        labels = probe.transforms.labels(64, x.device)
        with torch.no_grad():
            probe.encoder.eval()
            feats = probe.encoder(probe.transforms(x[:64]))
        loss = torch.nn.functional.cross_entropy(probe.head(feats), labels)
        head.zero_grad()
        loss.backward()
        head.step()
    assert transform_accuracy(probe, x[64:128]) > max(0.6, untrained)
    # The head is not part of the encoder handed on: no bias anywhere in it.
    assert all("bias" not in name for name, _ in encoder.named_parameters())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_trains_a_network_that_is_not_constant(
    variant: str, fashion_subset: Path
) -> None:
    x = trousers(fashion_subset, 128)
    cfg = TrainConfig(epochs=3, pretrain_epochs=2, batch_size=32, seed=0, **VARIANTS[variant])
    state, _ = fit(NET, x, cfg, None, False)
    k = len(TRANSFORM_SETS[cfg.transforms])
    assert state.c.shape == (k * NET.rep_dim,)
    assert float(state.c.abs().min()) >= 0.1 - 1e-6  # eps-pushed centre, every block
    z = embed(state.net, x[:32])
    assert float(z.std(dim=0).max()) > 1e-3  # not a constant map (no hypersphere collapse)
    scores = score(state.net, state.c, x[:32])
    assert torch.isfinite(scores).all() and float(scores.std()) > 1e-6
    for module in state.net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert not module.affine
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            assert module.bias is None


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, fashion_subset: Path
) -> dict[str, dict[str, Any]]:
    """Every variant trained a few epochs on the subset's trousers and exported."""
    models = tmp_path_factory.mktemp("variants")
    out = {}
    for variant, overrides in EXPORTED.items():
        spec = RunSpec(
            dataset="npz",
            normal_class="1",
            data_dir=fashion_subset,
            name=variant.replace("+", "-"),
            models_dir=models,
            progress=False,
        )
        cfg = TrainConfig(epochs=1, pretrain_epochs=1, seed=0, device="cpu", **overrides)
        out[variant] = {**train_and_export(spec, cfg), "models_dir": models}  # type: ignore[dict-item]
    return out


@pytest.mark.timeout(900)  # the first one trains and exports all six (about a minute, idle)
@pytest.mark.parametrize("variant", sorted(EXPORTED))
def test_export_round_trip_against_pytorch(
    variant: str,
    exported: dict[str, dict[str, Any]],
    fashion_subset: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from service.repository import SessionConfig, load_model

    result = exported[variant]
    assert result["export_rel_diff"] <= 1e-4
    path = Path(result["model_path"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map["deepsvdd"])
    overrides: dict[str, Any] = EXPORTED[variant]
    members = member_configs(TrainConfig(**overrides))
    views = sum(len(TRANSFORM_SETS[m.transforms]) for m in members)
    assert meta.rep_dim == views * NET.rep_dim
    assert meta.training["transforms"] == overrides.get("transforms", "identity")
    assert meta.training["pretrain_task"] == overrides.get("pretrain_task", "dcae")
    x = np.load(fashion_subset)["x_test"][:9, None].astype(np.float32) / 255.0
    scores, emb = session.run(["score", "embedding"], {"image": x})
    # The model file's contract holds: the score is the embedding's squared distance to c.
    by_hand = ((emb - np.array(meta.center, np.float32)) ** 2).sum(axis=1)
    np.testing.assert_allclose(scores, by_hand, rtol=1e-5)
    assert np.unique(scores.round(6)).size > 1
    # The service loads it as any other model (validation and warm-up, no warning).
    with caplog.at_level(logging.WARNING, logger="service"):
        loaded = load_model(
            path, meta.name, meta.version, SessionConfig(["CPUExecutionProvider"], 1)
        )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    np.testing.assert_allclose(loaded.run(x), scores, rtol=1e-6)


def test_served_over_http_unchanged(exported: dict[str, dict[str, Any]]) -> None:
    from PIL import Image

    from tests.support.images import image_bytes
    from tests.support.servers import make_settings, running_server

    models = next(iter(exported.values()))["models_dir"]
    image = np.full((28, 28), 40, np.uint8)
    image[4:24, 10:18] = 220  # a trouser-like bar
    body = image_bytes(Image.fromarray(image))
    with running_server(make_settings(models)) as live, live.client() as client:
        for variant in EXPORTED:
            name = variant.replace("+", "-")
            reply = client.post(
                f"/score?model={name}", files={"files": ("a.png", body, "image/png")}
            )
            assert reply.status_code == 200, reply.text
            assert np.isfinite(reply.json()["results"][0]["score"])


def test_cli_flags_reach_the_model_and_a_bad_shape_is_one_line(
    tmp_path: Path, fashion_subset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 28, 32), dtype=np.uint8)
    y = np.zeros(40, dtype=np.int64)
    np.savez(tmp_path / "wide.npz", x_train=x, y_train=y)
    args = ["train", "--dataset", "npz", "--data-dir", str(tmp_path / "wide.npz")]
    args += ["--normal-class", "0", "--transforms", "rotations", "--epochs", "1", "--quiet"]
    args += ["--models-dir", str(tmp_path / "m"), "--no-pretrain", "--device", "cpu"]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "needs square images; these are 28x32" in err[-1]
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").rglob("model.onnx"))
    logging.getLogger().handlers.clear()
    args = ["train", "--dataset", "npz", "--data-dir", str(fashion_subset), "--normal-class", "1"]
    args += ["--pretrain-task", "rotation", "--transforms", "rotations", "--epochs", "1"]
    args += ["--pretrain-epochs", "1", "--quiet", "--device", "cpu", "--threads", "1"]
    args += ["--models-dir", str(tmp_path / "ok"), "--pretrain-lr", "0.002"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    meta = ModelMetadata.from_json(
        ort.InferenceSession(summary["model_path"], providers=["CPUExecutionProvider"])
        .get_modelmeta()
        .custom_metadata_map["deepsvdd"]
    )
    assert meta.training["pretrain_lr"] == 0.002 and meta.training["transforms"] == "rotations"
    assert "sum over the 4 transformations" in meta.training["score"]


def test_ensemble_score_is_the_sum_of_median_normalised_member_scores(
    fashion_subset: Path,
) -> None:
    x = trousers(fashion_subset, 160)
    train, holdout = x[:128], TensorImages(x[128:])
    members = []
    for seed in (0, 1, 2):
        cfg = TrainConfig(epochs=2, pretrain=False, batch_size=32, seed=seed)
        members.append(fit(NET, train, cfg, None, False)[0])
    medians = [float(score(m.net, m.c, holdout).median()) for m in members]
    state, got_medians = combine(members, holdout)
    assert isinstance(state.net, Ensemble) and got_medians == pytest.approx(medians)
    assert state.c.shape == (3 * NET.rep_dim,) and state.R is None
    probe = x[:16]
    want = sum(score(m.net, m.c, probe) / q for m, q in zip(members, medians, strict=True))
    torch.testing.assert_close(score(state.net, state.c, probe), want, rtol=1e-5, atol=1e-6)
    # On the hold-out, each member contributes a median of exactly 1.
    per_member = [score(m.net, m.c, holdout) / q for m, q in zip(members, medians, strict=True)]
    assert all(float(p.median()) == pytest.approx(1.0) for p in per_member)
    # The members are different networks (different seeds), none of them constant.
    assert not torch.equal(embed(members[0].net, probe), embed(members[1].net, probe))
    assert all(float(embed(m.net, probe).std(dim=0).max()) > 1e-3 for m in members)


def test_ensemble_records_its_members_and_refuses_what_it_cannot_do(
    exported: dict[str, dict[str, Any]],
) -> None:
    session = ort.InferenceSession(
        exported["ensemble"]["model_path"], providers=["CPUExecutionProvider"]
    )
    meta = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map["deepsvdd"])
    record = meta.training["ensemble_members"]
    assert record["members"] == 2 and record["seeds"] == [0, 1]
    assert record["kinds"] == ["none:rotations", "none:rotations"]
    assert all(q > 0 for q in record["holdout_medians"])
    session = ort.InferenceSession(
        exported["mixed"]["model_path"], providers=["CPUExecutionProvider"]
    )
    mixed = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map["deepsvdd"])
    record = mixed.training["ensemble_members"]
    assert record["kinds"] == ["dcae:identity", "none:rotations"] and record["seeds"] == [0, 0]
    with pytest.raises(ValueError, match="needs the one-class objective"):
        TrainConfig(objective="soft-boundary", ensemble=2)
    spec = RunSpec(dataset="npz", normal_class="1", resume=True)
    with pytest.raises(ValueError, match="--resume cannot continue an --ensemble run"):
        train_and_export(spec, TrainConfig(ensemble=2))


def test_members_repeat_with_the_next_seed_and_bad_ones_are_named() -> None:
    cfg = TrainConfig(seed=5, ensemble=2, members=("dcae:identity", "rotation:rotations"))
    members = member_configs(cfg)
    assert [(m.pretrain_task, m.transforms, m.seed) for m in members] == [
        ("dcae", "identity", 5),
        ("rotation", "rotations", 5),
        ("dcae", "identity", 6),
        ("rotation", "rotations", 6),
    ]
    assert all(m.n_members == 1 and m.pretrain for m in members)
    plain = member_configs(TrainConfig(seed=1, ensemble=3, pretrain=False))
    assert [(m.pretrain, m.seed) for m in plain] == [(False, 1), (False, 2), (False, 3)]
    with pytest.raises(ValueError, match="ensemble member 'jigsaw:identity' is not"):
        member_configs(TrainConfig(members=("jigsaw:identity",)))
