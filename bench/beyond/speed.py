"""What each variant of bench/beyond costs to serve: its exported graph timed in raw ONNX
Runtime (untrained weights: the cost is the same)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from bench.beyond.variants import VARIANTS
from bench.harness.machine import cpu_model
from modelfile import INPUT_NAME, SCORE_OUTPUT
from training import preprocess
from training.ensemble import Ensemble
from training.export import ScoringModel, to_onnx_bytes
from training.networks import Encoder, make_config
from training.transforms import out_dim, with_transforms


def measure_speed(results: dict[str, Any], batch: int = 64, seconds: float = 3.0) -> dict[str, Any]:
    """Images/s of each variant's exported graph (untrained weights: the cost is the same)."""
    load = os.getloadavg()[0]
    net_cfg = make_config("mnist", 1, 28, 28)
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    found: dict[str, Any] = {}
    for v in VARIANTS.values():
        torch.manual_seed(0)
        kinds = [VARIANTS[b].transforms for b in v.ensemble] or [v.transforms]
        members = [with_transforms(Encoder(net_cfg), t) for t in kinds]
        net = members[0] if len(members) == 1 else Ensemble(members, [1.0] * len(members))
        net.eval()
        model = ScoringModel(preprocess.Preprocess(-1.0, 5.0), net, torch.ones(out_dim(net)))
        graph = to_onnx_bytes(model, torch.from_numpy(x[:2]))
        row = {}
        for label, threads in (("one_thread", 1), ("all_threads", 0)):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
            for _ in range(5):
                session.run([SCORE_OUTPUT], {INPUT_NAME: x})
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                session.run([SCORE_OUTPUT], {INPUT_NAME: x})
                n += 1
            row[label] = n * batch / (time.perf_counter() - t0)
        found[v.name] = row
        print(
            f"    {v.name}: {row['one_thread']:,.0f} / {row['all_threads']:,.0f} images/s",
            flush=True,
        )
    note = (
        f"{seconds:g} s per measurement, {os.cpu_count()} CPUs ({cpu_model()}), load average "
        f"{load:.2f} before."
    )
    return {"batch": batch, "note": note, "variants": found}
