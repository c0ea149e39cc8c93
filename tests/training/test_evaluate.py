"""Evaluating an exported model: torch-free, and the scores `deepsvdd report` draws are the
ones `deepsvdd evaluate` measures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import TINY_NORMAL_CLASS
from training.calibration import auc_or_none
from training.evaluate import evaluate, score_test_split

ROOT = Path(__file__).resolve().parents[2]


def test_importing_evaluate_loads_no_torch() -> None:
    probe = (
        "import sys, training.evaluate; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnx', 'tqdm'}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_score_test_split_is_what_evaluate_measures(
    tiny_model: dict[str, Any], fashion_subset: Path
) -> None:
    args = ("tiny", "npz", str(TINY_NORMAL_CLASS), fashion_subset)
    scored = score_test_split(*args, models_dir=tiny_model["models_dir"])
    result = evaluate(*args, models_dir=tiny_model["models_dir"])
    assert scored.images.shape == (2000, 28, 28, 1) and scored.images.dtype == np.uint8
    assert scored.scores.shape == scored.labels.shape == (2000,)
    assert int(scored.labels.sum()) == result["n_anomalous"] == 2000 - np.sum(scored.labels == 0)
    assert 0 < result["n_anomalous"] < 2000
    assert result["auc"] == auc_or_none(scored.labels, scored.scores)
    assert result["auc"] == pytest.approx(tiny_model["auc"], abs=1e-3)
    assert str(scored.path) == result["model_path"] == tiny_model["model_path"]
