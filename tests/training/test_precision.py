"""bf16 autocast and the memory layout: the collapse guards hold (no bias, c and the distances
in fp32), `auto` resolves per device, and a bf16-trained model exports to an fp32 graph."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from modelfile.metadata import METADATA_KEY, ModelMetadata
from training import deepsvdd, precision
from training.config import RunSpec, TrainConfig
from training.deepsvdd import init_center_c, pretrain_dcae, train_deepsvdd
from training.networks import Encoder, make_config
from training.pipeline import train_and_export
from training.run import resolve_config

NET = make_config("mnist", 1, 28, 28)
BF16 = TrainConfig(epochs=1, pretrain_epochs=1, batch_size=32, precision="bf16")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """96 smooth random images: varied enough that the features are not all alike."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(96, 1, 7, 7, generator=gen)
    return nn.functional.interpolate(coarse, size=(28, 28), mode="bilinear")


def spy_distances(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.dtype, torch.dtype, bool]]:
    """Records (phi's dtype, c's dtype, autocast on) at every distance of the training loop."""
    seen: list[tuple[torch.dtype, torch.dtype, bool]] = []
    real = deepsvdd.sq_dist

    def recording(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        seen.append((z.dtype, c.dtype, torch.is_autocast_enabled("cpu")))
        return real(z, c)

    monkeypatch.setattr(deepsvdd, "sq_dist", recording)
    return seen


def test_bf16_training_computes_the_centre_and_distances_in_fp32(
    images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    net = Encoder(NET)
    want_c = init_center_c(copy.deepcopy(net), images)  # fp32 features, before any step
    seen = spy_distances(monkeypatch)
    fc_dtypes: list[torch.dtype] = []
    net.fc.register_forward_hook(lambda _m, _i, out: fc_dtypes.append(out.dtype))

    state = train_deepsvdd(net, images, BF16)

    assert torch.bfloat16 in fc_dtypes  # the forward passes did run in bf16
    assert seen and all(z == c == torch.float32 for z, c, _ in seen), seen
    assert not any(autocast for _, _, autocast in seen)
    assert state.c.dtype == torch.float32
    torch.testing.assert_close(state.c, want_c, rtol=1e-5, atol=1e-6)


def test_a_centre_from_bf16_features_would_fail_the_check_above(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    net = Encoder(NET).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_c = net(images).float().mean(dim=0)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(bf16_c, init_center_c(net, images), rtol=1e-5, atol=1e-6)


def test_bf16_training_keeps_fp32_parameters_and_no_bias(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    encoder, history, _ = pretrain_dcae(NET, images, BF16)
    state = train_deepsvdd(encoder, images, BF16)
    assert np.isfinite(history).all() and np.isfinite(state.history["train"]).all()
    for name, param in state.net.named_parameters():
        assert param.dtype == torch.float32, name
        assert "bias" not in name, name
    assert all(not bn.affine for bn in state.net.bns)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("channels_last", "device", "want"),
    [
        (None, "cpu", torch.channels_last),
        (None, "cuda", torch.contiguous_format),
        (False, "cpu", torch.contiguous_format),
        (True, "cuda", torch.channels_last),
    ],
)
def test_the_layout_per_device(
    channels_last: bool | None, device: str, want: torch.memory_format
) -> None:
    cfg = TrainConfig(channels_last=channels_last)
    assert precision.Compute.of(cfg, torch.device(device)).layout == want


def test_the_layout_choice_reaches_the_batches(images: torch.Tensor) -> None:
    rgb = images.expand(-1, 3, -1, -1).contiguous()  # one channel would be in both layouts
    net = Encoder(make_config("mnist", 3, 28, 28))
    layouts: list[bool] = []
    net.convs[0].register_forward_pre_hook(
        lambda _m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    for choice in (True, False):
        train_deepsvdd(net, rgb, TrainConfig(epochs=1, batch_size=32, channels_last=choice))
        assert layouts[-1] is choice  # the last forward pass is a training step's


def test_auto_is_fp32_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    cpu = torch.device("cpu")
    assert precision.resolve_precision("auto", cpu) == "fp32"
    assert precision.resolve_precision("bf16", cpu) == "bf16"
    cfg = resolve_config(RunSpec("npz", "0"), TrainConfig(precision="auto", device="cpu"))
    assert (cfg.precision, cfg.channels_last) == ("fp32", True)


def test_the_patch_model_trains_in_fp32_and_refuses_bf16() -> None:
    spec = RunSpec("folder", "good")
    patch = TrainConfig(model="patch", precision="auto", device="cpu")
    cfg = resolve_config(spec, patch)
    assert (cfg.precision, cfg.channels_last) == ("fp32", False)
    for asked in (replace(patch, precision="bf16"), replace(patch, channels_last=True)):
        with pytest.raises(ValueError, match="apply to --model image"):
            resolve_config(spec, asked)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n")
    assert precision.cpu_flags(info) >= precision.NATIVE_BF16_FLAGS
    assert precision.cpu_flags(tmp_path / "absent") == frozenset()


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]


def test_a_bf16_trained_model_exports_an_fp32_graph(fashion_subset: Path, tmp_path: Path) -> None:
    data = np.load(fashion_subset)
    small = tmp_path / "small.npz"
    np.savez(
        small,
        x_train=data["x_train"][:1500],
        y_train=data["y_train"][:1500],
        x_test=data["x_test"][:200],
        y_test=data["y_test"][:200],
    )
    spec = RunSpec("npz", "1", data_dir=small, models_dir=tmp_path / "models", progress=False)
    result = train_and_export(spec, BF16)
    assert result is not None and result["export_rel_diff"] <= 1e-4

    proto = onnx.load(result["model_path"])
    floats = onnx.TensorProto.FLOAT
    # fp32 weights, int64 shapes: no bf16, fp16 or fp64 tensor anywhere in the graph.
    assert {t.data_type for t in proto.graph.initializer} == {floats, onnx.TensorProto.INT64}
    ends = [*proto.graph.input, *proto.graph.output]
    assert all(v.type.tensor_type.elem_type == floats for v in ends)
    session = ort.InferenceSession(result["model_path"], providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert meta.training["precision"] == "bf16"
    x = data["x_test"][:16, None].astype(np.float32) / 255.0
    score, emb = session.run(["score", "embedding"], {"image": x})
    by_hand = ((emb - np.array(meta.center, np.float32)) ** 2).sum(axis=1)
    np.testing.assert_allclose(score, by_hand, rtol=1e-5)
