"""Detection quality under each decode policy: Deep SVDD trained on a folder of JPEG crops of
package photographs, one photograph's crops the normal class and every other photograph's the
anomalies, the same seeds and schedule under each arm of `timing.ARMS`; the test AUC of each."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.decode.photos import NORMALS
from bench.decode.timing import ARMS, draft_margin
from modelfile.metadata import DecodePolicy
from training.config import RunSpec, TrainConfig
from training.pipeline import train_and_export


def train_auc(
    root: Path, normal: str, policy: DecodePolicy, seed: int, schedule: dict[str, Any]
) -> dict[str, Any]:
    """Trains one model on `root` (a folder made by `photos.write_folder`); its test AUC."""
    with tempfile.TemporaryDirectory(prefix="decode-models-") as models:
        spec = RunSpec(
            dataset="folder",
            normal_class=normal,
            data_dir=root,
            image_size=schedule["image_size"],
            channels=1,
            name=f"{normal}-{policy}",
            models_dir=Path(models),
            progress=False,
            decode=policy,
        )
        cfg = TrainConfig(
            epochs=schedule["epochs"],
            pretrain=schedule["pretrain_epochs"] > 0,
            pretrain_epochs=schedule["pretrain_epochs"],
            seed=seed,
            device="cpu",
        )
        summary = train_and_export(spec, cfg)
    assert summary is not None
    return {
        "normal": normal,
        "policy": policy,
        "seed": seed,
        "auc": summary["auc"],
        "train_seconds": summary["train_seconds"],
    }


def quality_rows(root: Path, seeds: list[int], schedule: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (normal class, seed) under each arm of `timing.ARMS`, in that order."""
    rows = []
    for normal in (t.split(".")[0] for t in NORMALS):
        for seed in seeds:
            for arm, (policy, margin) in ARMS.items():
                with draft_margin(margin):
                    row = train_auc(root, normal, policy, seed, schedule)
                rows.append({**row, "arm": arm})
                print(f"  {normal} seed {seed} {arm}: AUC {row['auc']:.4f}", flush=True)
    return rows


def _mean_auc(rows: list[dict[str, Any]]) -> float:
    return float(np.mean([r["auc"] for r in rows]))


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}


def auc_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean AUC per normal class and arm, and each reduced arm's gap to `full`: per class, and
    over every class and seed."""
    normals = sorted({r["normal"] for r in rows})
    means = {
        n: {a: _mean_auc([r for r in rows if r["normal"] == n and r["arm"] == a]) for a in ARMS}
        for n in normals
    }
    means["all"] = {a: _mean_auc([r for r in rows if r["arm"] == a]) for a in ARMS}
    reduced = [a for a in ARMS if a != "full"]
    gaps = {n: {a: m[a] - m["full"] for a in reduced} for n, m in means.items()}
    return {
        "mean_auc": {n: _rounded(m) for n, m in means.items() if n != "all"},
        "gap": {n: _rounded(g) for n, g in gaps.items() if n != "all"},
        "overall": _rounded(means["all"]),
        "overall_gap": _rounded(gaps["all"]),
    }
