"""Deep SAD against Deep SVDD on Fashion-MNIST in the Deep SAD paper's protocol: one normal
class, labelled anomalies from ONE other class at gamma_l = m / (n + m), the whole test split.

Runs `deepsvdd train`'s pipeline in-process for each setting, then scores the exported model
through ONNX Runtime. Run from the repository root: `.venv/bin/python -m bench.deepsad --help`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness.machine import python_version
from modelfile.layout import open_model
from training.calibration import auc_or_none, holdout_size
from training.config import RunSpec, TrainConfig
from training.data import FASHION_MNIST_CLASSES, load_dataset
from training.evaluate import ort_scores
from training.pipeline import train_and_export

OUT = Path(__file__).resolve().parent


def labelled_fraction(gamma: float, n_normal: int, n_anomaly_class: int) -> float:
    """The share of the anomaly class that makes gamma_l = m / (n + m), with n the unlabelled
    normal training images (after the calibration hold-out)."""
    n = n_normal - holdout_size(n_normal, 0.1)
    m = gamma * n / (1 - gamma)
    return m / n_anomaly_class


def run(
    normal: int, anomaly: int, gamma: float | None, args: argparse.Namespace, models: Path
) -> dict[str, Any]:
    data = load_dataset("fashion-mnist", seed=args.seed)
    assert data.x_test is not None and data.y_test is not None
    fraction = None
    if gamma is not None:
        counts = np.bincount(data.y_train)
        fraction = labelled_fraction(gamma, int(counts[normal]), int(counts[anomaly]))
    spec = RunSpec(
        dataset="fashion-mnist",
        normal_class=str(normal),
        name=f"sad-{gamma}" if gamma is not None else "svdd",
        models_dir=models,
        progress=False,
        anomaly_classes=(str(anomaly),) if gamma is not None else (),
        labelled_fraction=fraction or 1.0,
    )
    cfg = TrainConfig(epochs=args.epochs, pretrain=False, seed=args.seed, device="cpu")
    summary = train_and_export(spec, cfg)
    if summary is None:  # only a distributed run's other ranks return none
        raise RuntimeError("training returned no summary")
    session, _ = open_model(Path(summary["model_path"]))
    scores = ort_scores(session, np.asarray(data.x_test))
    labels = (data.y_test != normal).astype(np.int64)
    pair = np.isin(data.y_test, [normal, anomaly])
    others = data.y_test != anomaly
    labelled = summary["labelled"]
    return {
        "method": "Deep SVDD" if gamma is None else "Deep SAD",
        "gamma_l": gamma,
        "n_labelled": 0 if labelled is None else labelled["n_labelled_anomalies"],
        "auc": auc_or_none(labels, scores),
        "auc_labelled_class": auc_or_none(labels[pair], scores[pair]),
        "auc_other_classes": auc_or_none(labels[others], scores[others]),
        "train_seconds": summary["train_seconds"],
    }


def markdown(rows: list[dict[str, Any]], normal: int, anomaly: int, command: str) -> str:
    names = FASHION_MNIST_CLASSES
    lines = [
        "# Deep SAD against Deep SVDD on Fashion-MNIST",
        "",
        f"Normal class {normal} ({names[normal]}); labelled anomalies from class {anomaly} "
        f"({names[anomaly]}) only, gamma_l = m / (n + m); test AUC in percent on the whole "
        "test split (1,000 normal, 9,000 anomalous), and split into the labelled class and the "
        "eight classes never seen in training. One seed.",
        "",
        "Machine shared; shortened schedule (no pretraining, "
        f"{rows[0]['epochs']} epochs, lr 1e-4, batch 200; the paper pretrains and trains for "
        "longer), so the absolute figures are below a full run's; the comparison is on the "
        "same seed, network initialisation and schedule.",
        "",
        "| method | gamma_l | labelled | AUC all | AUC labelled class | AUC unseen classes |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        gamma = "-" if r["gamma_l"] is None else f"{r['gamma_l']:g}"
        lines.append(
            f"| {r['method']} | {gamma} | {r['n_labelled']} | {100 * r['auc']:.1f} | "
            f"{100 * r['auc_labelled_class']:.1f} | {100 * r['auc_other_classes']:.1f} |"
        )
    lines += ["", "Command (OMP_NUM_THREADS=1, one process at a time):", "", f"    {command}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.deepsad", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--normal", type=int, default=0)
    parser.add_argument("--anomaly", type=int, default=6)
    parser.add_argument("--gammas", default="0.01,0.05,0.1")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for gamma in [None, *map(float, args.gammas.split(","))]:
            row = {**run(args.normal, args.anomaly, gamma, args, Path(tmp)), "epochs": args.epochs}
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    command = "OMP_NUM_THREADS=1 .venv/bin/python -m bench.deepsad " + shlex.join(sys.argv[1:])
    OUT.mkdir(exist_ok=True)
    (OUT / "deepsad.md").write_text(markdown(rows, args.normal, args.anomaly, command))
    record = {"rows": rows, "command": command, "python": python_version()}
    (OUT / "deepsad.json").write_text(json.dumps(record, indent=2) + "\n")
