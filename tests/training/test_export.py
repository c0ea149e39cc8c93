"""ONNX export: round trip against PyTorch, the metadata contract, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from modelfile.layout import claim_version
from modelfile.metadata import METADATA_KEY, DatasetInfo, InputSpec, ModelMetadata
from training import export
from training.export import ExportError, ScoringModel, export_model
from training.networks import Encoder, make_config
from training.preprocess import Preprocess


def _session(path: Path) -> tuple[ort.InferenceSession, ModelMetadata]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s, ModelMetadata.from_json(s.get_modelmeta().custom_metadata_map[METADATA_KEY])


def _meta(name: str = "m", version: int = 1) -> ModelMetadata:
    return ModelMetadata(
        name=name,
        version=version,
        created="2026-01-01T00:00:00+00:00",
        objective="one-class",
        nu=0.1,
        center=[0.5] * 32,
        radius=None,
        thresholds={"q0.95": 1.0},
        default_threshold="q0.95",
        input=InputSpec(channels=1, height=28, width=28, color="L"),
        dataset=DatasetInfo(name="npz", normal_class=0, n_train=10),
    )


@pytest.fixture
def scoring_model() -> ScoringModel:
    torch.manual_seed(0)
    return ScoringModel(
        Preprocess(-1.0, 6.0), Encoder(make_config("mnist", 1, 28, 28)), torch.full((32,), 0.5)
    ).eval()


def test_trained_model_round_trip(tiny_model: dict[str, Any], fashion_subset: Path) -> None:
    session, meta = _session(Path(tiny_model["model_path"]))
    x = np.load(fashion_subset)["x_test"][:7, None].astype(np.float32) / 255.0
    for batch in (x[:1], x):
        score, emb = session.run(["score", "embedding"], {"image": batch})
        assert score.shape == (len(batch),) and emb.shape == (len(batch), len(meta.center))
        by_hand = ((emb - np.array(meta.center, np.float32)) ** 2).sum(axis=1)
        np.testing.assert_allclose(score, by_hand, rtol=1e-5)
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].shape[1:] == [1, 28, 28]


def test_onnx_equals_pytorch_for_batch_1_and_7(scoring_model: ScoringModel, tmp_path: Path) -> None:
    _, version_dir = claim_version(tmp_path / "m")
    x = torch.rand(7, 1, 28, 28)
    path, rel = export_model(scoring_model, _meta(), version_dir, x)
    assert rel <= 1e-4  # a tiny network: far inside export.EXPORT_RTOL
    session, _ = _session(path)
    with torch.no_grad():
        want = scoring_model(x)[0].numpy()
    for n in (1, 7):
        got = session.run(["score"], {"image": x[:n].numpy()})[0]
        np.testing.assert_allclose(got, want[:n], rtol=1e-4)
    pbtxt = (tmp_path / "m" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in pbtxt and "dynamic_batching" in pbtxt


def test_metadata_carries_the_spec_fields(tiny_model: dict[str, Any]) -> None:
    session, meta = _session(Path(tiny_model["model_path"]))
    raw = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    for key in (
        "format_version",
        "name",
        "version",
        "created",
        "objective",
        "nu",
        "center",
        "radius",
        "thresholds",
        "default_threshold",
        "input",
        "dataset",
        "metrics",
        "training",
        "software",
    ):
        assert key in raw, key
    assert {"q0.9", "q0.95", "q0.99", "max"} <= set(meta.thresholds)
    assert meta.thresholds["q0.9"] <= meta.thresholds["q0.95"] <= meta.thresholds["q0.99"]
    assert meta.default_threshold == "q0.95" and meta.radius is None
    assert meta.metrics["auc"] == pytest.approx(tiny_model["auc"])
    assert meta.training["preprocessing"]["gcn"] == "l1"
    assert meta.expected_anomaly_rate["q0.95"] == pytest.approx(0.05, abs=0.03)
    assert raw["decode"] == "reduced"  # new models: JPEGs DCT-scaled, in training and serving


def test_crash_while_writing_leaves_nothing(
    scoring_model: ScoringModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    _, version_dir = claim_version(tmp_path / "m")
    with pytest.raises(OSError, match="No space"):
        export_model(scoring_model, _meta(), version_dir, torch.rand(4, 1, 28, 28))
    assert not version_dir.exists()
    assert list((tmp_path / "m").rglob("*.onnx")) == []
    assert list((tmp_path / "m").rglob("*.tmp")) == []


def test_mismatch_with_pytorch_refuses_to_write(
    scoring_model: ScoringModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export.to_onnx_bytes

    def drifted(model: ScoringModel, sample: torch.Tensor, names: tuple[str, ...]) -> bytes:
        other = ScoringModel(model.pre, model.net, model.c + 1.0)  # a graph that scores differently
        return real(other, sample, names)

    monkeypatch.setattr(export, "to_onnx_bytes", drifted)
    _, version_dir = claim_version(tmp_path / "m")
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_model(scoring_model, _meta(), version_dir, torch.rand(4, 1, 28, 28))
    assert not version_dir.exists()
