"""ONNX export: one self-contained file per model version, checked against PyTorch.

The graph takes pixels / 255 (`image`, [N, C, H, W]) and does the whole preprocessing
itself, so any ONNX Runtime client (Triton included) gets the training-time score.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from modelfile import (
    ANOMALY_MAP_OUTPUT,
    INPUT_NAME,
    MODEL_FILE,
    OUTPUT_NAMES,
    SCORE_OUTPUT,
    TRITON_CONFIG,
)
from modelfile.layout import triton_config, write_atomic
from modelfile.metadata import METADATA_KEY, ModelMetadata
from training.preprocess import Preprocess

# ONNX Runtime must reproduce PyTorch's scores to this relative difference (max |diff| over
# the batch divided by the largest |score|). float32 kernels differ by ~1e-6 on a tiny network,
# but the gap grows with the network: a 128-px whole-image model trained on photographs measured
# 1.24e-4 on an AVX2 CPU. An export gone wrong (a layer in training mode, a lost constant)
# moves scores by far more than 1e-3.
EXPORT_RTOL = 1e-3
# A patch model's outputs, in its forward's order; its score and map are both checked.
PATCH_OUTPUT_NAMES = (*OUTPUT_NAMES, ANOMALY_MAP_OUTPUT)


class ExportError(Exception):
    """The exported graph does not reproduce PyTorch, or cannot be written."""


class ScoringModel(nn.Module):
    """pixels / 255 -> preprocessing -> phi -> (score = ||phi - c||^2, embedding).

    phi is the encoder, or a MultiView of it: the transformed copies then go through the
    encoder as one batch inside the graph, and the score is summed over them."""

    c: torch.Tensor

    def __init__(self, pre: Preprocess, net: nn.Module, c: torch.Tensor) -> None:
        super().__init__()
        self.pre = pre
        self.net = net
        self.register_buffer("c", c.detach().clone().float())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.net(self.pre(image))  # (N, p)
        return ((z - self.c) ** 2).sum(dim=1), z  # (N,), (N, p)


def output_names(meta: ModelMetadata) -> tuple[str, ...]:
    """The graph's outputs, in the scoring module's order: a patch model's map comes third."""
    return PATCH_OUTPUT_NAMES if meta.kind == "patch" else OUTPUT_NAMES


def checked_outputs(meta: ModelMetadata) -> tuple[str, ...]:
    """The outputs that must reproduce PyTorch: the score, and a patch model's map."""
    return (SCORE_OUTPUT, ANOMALY_MAP_OUTPUT) if meta.kind == "patch" else (SCORE_OUTPUT,)


def to_onnx_bytes(
    model: nn.Module, sample: torch.Tensor, names: tuple[str, ...] = OUTPUT_NAMES
) -> bytes:
    """Traces the scoring model with a dynamic batch axis; returns the serialised graph."""
    model = model.eval().cpu()
    batch = torch.export.Dim("N", min=1)
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (sample.cpu(),),
            None,
            input_names=[INPUT_NAME],
            output_names=list(names),
            dynamic_shapes={INPUT_NAME: {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    assert program is not None
    return program.model_proto.SerializeToString()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter narrates each step on stdout and warns through logging; the CLI's
    stdout must end with one JSON line, so both are held back here."""
    level = logging.getLogger("torch").level
    logging.getLogger("torch").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.getLogger("torch").setLevel(level)


def with_metadata(graph: bytes, meta: ModelMetadata) -> bytes:
    """The graph with our metadata as its only model-level entry, and none on its nodes: the
    exporter notes each node's Python stack trace (file paths of the machine that trained it,
    about 1 KB a node), which a shipped model has no use for."""
    proto = onnx.load_from_string(graph)
    del proto.metadata_props[:]
    for node in proto.graph.node:
        del node.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    proto.producer_name = "deepsvdd-serve"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def verify(
    graph: bytes,
    model: nn.Module,
    batch: torch.Tensor,
    names: tuple[str, ...] = OUTPUT_NAMES,
    checked: tuple[str, ...] = (SCORE_OUTPUT,),
) -> float:
    """Runs the graph in ONNX Runtime on a real batch; returns the largest relative difference
    of the `checked` outputs (max |diff| over the batch / the largest |value| of PyTorch's)."""
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        wants = [t.numpy() for t in model.eval().cpu()(batch.cpu())]
    gots = session.run(list(checked), {INPUT_NAME: batch.cpu().numpy()})
    worst = 0.0
    for name, got in zip(checked, gots, strict=True):
        want = wants[names.index(name)]
        if got.shape != want.shape:
            raise ExportError(f"ONNX {name} shape {got.shape} differs from PyTorch's {want.shape}")
        rel = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))
        if not rel <= EXPORT_RTOL:
            raise ExportError(
                f"ONNX Runtime's {name} differs from PyTorch by {rel:.2e} (relative), "
                f"above the {EXPORT_RTOL:.0e} allowed; nothing was written"
            )
        worst = max(worst, rel)
    return worst


def export_model(
    model: nn.Module, meta: ModelMetadata, version_dir: Path, batch: torch.Tensor
) -> tuple[Path, float]:
    """Writes `version_dir/model.onnx` (and Triton's config beside the versions).

    `version_dir` comes from `claim_version`; on any failure it is removed again, so no
    partial model is ever visible. Returns the path and the measured relative difference.
    """
    try:
        names = output_names(meta)
        graph = with_metadata(to_onnx_bytes(model, batch[:2], names), meta)
        rel = verify(graph, model, batch, names, checked_outputs(meta))
        # The model's rename is the last step: once model.onnx is visible (and a reload may
        # serve it), nothing can fail and remove it again.
        write_atomic(version_dir.parent / TRITON_CONFIG, triton_config(meta).encode())
        path = version_dir / MODEL_FILE
        write_atomic(path, graph)
    except BaseException:
        shutil.rmtree(version_dir, ignore_errors=True)
        raise
    return path, rel
