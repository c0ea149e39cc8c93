"""ONNX export: one self-contained file per model version, checked against PyTorch.

The graph takes pixels / 255 (`image`, [N, C, H, W]) and does the whole preprocessing
itself, so any ONNX Runtime client (Triton included) gets the training-time score.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from service.metadata import METADATA_KEY, ModelMetadata
from training.networks import Encoder
from training.preprocess import Preprocess

# ONNX Runtime must reproduce PyTorch's scores to this relative difference (max |diff| over
# the batch divided by the largest |score|); float32 kernels differ by ~1e-6 here.
EXPORT_RTOL = 1e-4
MODEL_FILE = "model.onnx"


class ExportError(Exception):
    """The exported graph does not reproduce PyTorch, or cannot be written."""


class ScoringModel(nn.Module):
    """pixels / 255 -> preprocessing -> phi -> (score = ||phi - c||^2, embedding)."""

    c: torch.Tensor

    def __init__(self, pre: Preprocess, net: Encoder, c: torch.Tensor) -> None:
        super().__init__()
        self.pre = pre
        self.net = net
        self.register_buffer("c", c.detach().clone().float())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.net(self.pre(image))  # (N, p)
        return ((z - self.c) ** 2).sum(dim=1), z  # (N,), (N, p)


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def claim_version(model_dir: Path) -> tuple[int, Path]:
    """Creates the next free version directory; mkdir is atomic, so two runs never share one."""
    model_dir.mkdir(parents=True, exist_ok=True)
    while True:
        version = next_version(model_dir)
        path = model_dir / str(version)
        with contextlib.suppress(FileExistsError):
            path.mkdir()
            return version, path


def to_onnx_bytes(model: ScoringModel, sample: torch.Tensor) -> bytes:
    """Traces the scoring model with a dynamic batch axis; returns the serialised graph."""
    model = model.eval().cpu()
    batch = torch.export.Dim("N", min=1)
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (sample.cpu(),),
            None,
            input_names=["image"],
            output_names=["score", "embedding"],
            dynamic_shapes={"image": {0: batch}},
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
    proto = onnx.load_from_string(graph)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    proto.producer_name = "deepsvdd-serve"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def verify(graph: bytes, model: ScoringModel, batch: torch.Tensor) -> float:
    """Runs the graph in ONNX Runtime on a real batch; returns the relative score difference."""
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = model.eval().cpu()(batch.cpu())[0].numpy()
    got = session.run(["score"], {"image": batch.cpu().numpy()})[0]
    if got.shape != want.shape:
        raise ExportError(f"ONNX score shape {got.shape} differs from PyTorch's {want.shape}")
    rel = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))
    if not rel <= EXPORT_RTOL:
        raise ExportError(
            f"ONNX Runtime scores differ from PyTorch by {rel:.2e} (relative), "
            f"above the {EXPORT_RTOL:.0e} allowed; nothing was written"
        )
    return rel


def write_atomic(path: Path, data: bytes) -> None:
    """Temporary file in the same directory, fsync, then rename: readers see all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def triton_config(meta: ModelMetadata, max_batch: int = 256) -> str:
    """Triton's config.pbtxt for the model directory: same repository, served unchanged."""
    spec = meta.input
    return (
        f'name: "{meta.name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch}\n"
        "input [\n"
        f'  {{ name: "image" data_type: TYPE_FP32 dims: [ {spec.channels}, '
        f"{spec.height}, {spec.width} ] }}\n"
        "]\n"
        "output [\n"
        '  { name: "score" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } },\n'
        f'  {{ name: "embedding" data_type: TYPE_FP32 dims: [ {meta.rep_dim} ] }}\n'
        "]\n"
        "dynamic_batching { max_queue_delay_microseconds: 2000 }\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )


def export_model(
    model: ScoringModel, meta: ModelMetadata, version_dir: Path, batch: torch.Tensor
) -> tuple[Path, float]:
    """Writes `version_dir/model.onnx` (and Triton's config beside the versions).

    `version_dir` comes from `claim_version`; on any failure it is removed again, so no
    partial model is ever visible. Returns the path and the measured relative difference.
    """
    try:
        graph = with_metadata(to_onnx_bytes(model, batch[:2]), meta)
        rel = verify(graph, model, batch)
        # The model's rename is the last step: once model.onnx is visible (and a reload may
        # serve it), nothing can fail and remove it again.
        write_atomic(version_dir.parent / "config.pbtxt", triton_config(meta).encode())
        path = version_dir / MODEL_FILE
        write_atomic(path, graph)
    except BaseException:
        shutil.rmtree(version_dir, ignore_errors=True)
        raise
    return path, rel
