"""The `deepsvdd` command line: JSON results, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def deepsvdd(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    # Status lines ("deepsvdd train: loading ... data...") may come first; one error line ends it.
    lines = [line for line in proc.stderr.strip().splitlines() if not line.endswith("...")]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_evaluate_reproduces_the_auc_at_export(
    tiny_model: dict[str, Any], fashion_subset: Path
) -> None:
    result = last_json(
        deepsvdd(
            "evaluate",
            tiny_model["model_path"],
            "--dataset",
            "npz",
            "--normal-class",
            "1",
            "--data-dir",
            fashion_subset,
        )
    )
    assert result["auc"] == pytest.approx(tiny_model["auc"], abs=1e-3)


def test_report_draws_the_evaluated_test_split(
    tiny_model: dict[str, Any], fashion_subset: Path, tmp_path: Path
) -> None:
    data = ("--dataset", "npz", "--normal-class", "1", "--data-dir", fashion_subset)
    where = ("--models-dir", tiny_model["models_dir"])
    result = last_json(deepsvdd("report", "tiny", *data, *where, "--out", tmp_path))
    assert result["model_path"] == tiny_model["model_path"]
    for kind in ("extremes", "roc", "scores"):
        assert result[kind] == str(tmp_path / f"tiny-{kind}.png")
        with Image.open(result[kind]) as img:
            assert img.format == "PNG" and img.width > 100


def test_baselines_run_on_the_normal_class(fashion_subset: Path) -> None:
    data = ("--dataset", "npz", "--normal-class", "1", "--data-dir", fashion_subset)
    result = last_json(deepsvdd("baselines", *data))
    assert result["dataset"] == "npz" and result["normal_class"] == 1
    assert result["eval_size"] == 1800  # the 90% of 2,000 test images outside the hold-out
    for method in ("ocsvm", "kde", "iforest"):
        assert 0.8 < result[method] <= 1.0, (method, result[method])


def test_tiny_model_beats_stated_auc(tiny_model: dict[str, Any]) -> None:
    # Real Fashion-MNIST trousers, 1,080 training images, 2 + 6 epochs: measured 0.95+.
    assert tiny_model["auc"] > 0.90
    assert tiny_model["train_seconds"] > 0


def test_inspect_prints_metadata(tiny_model: dict[str, Any]) -> None:
    proc = deepsvdd("inspect", "tiny", "--models-dir", tiny_model["models_dir"])
    meta = json.loads(proc.stdout)
    assert meta["name"] == "tiny" and meta["version"] == 1
    # Issue 17.9: the centre is summarised (not 32 lines of numbers) unless --full.
    assert meta["center"]["dim"] == 32 and len(meta["center"]["first"]) == 4
    full_text = deepsvdd(
        "inspect", "tiny", "--full", "--models-dir", tiny_model["models_dir"]
    ).stdout
    for text in (proc.stdout, full_text):  # no line holds a lone number
        assert not [line for line in text.splitlines() if line.strip().rstrip(",")[:1].isdigit()]
    full = json.loads(full_text)
    assert len(full["center"]) == 32
    assert meta["center"]["norm"] == pytest.approx(float(np.linalg.norm(full["center"])))
    # Issue 17.2: how many images the thresholds rest on, and how uncertain their rates are.
    calibration = meta["calibration"]
    assert calibration["n"] == tiny_model["calibration"]["n"] >= 100
    low, high = calibration["rate_interval"]["q0.95"]
    assert low < meta["expected_anomaly_rate"]["q0.95"] < high


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset of our own: discs (normal) and squares, PNG and JPEG, no test/."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40]
    for cls in ("disc", "square"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(250):
            cy, cx, r = rng.integers(14, 26), rng.integers(14, 26), rng.integers(6, 11)
            if cls == "disc":
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
            else:
                mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
            img = (mask * 200 + rng.normal(0, 10, mask.shape)).clip(0, 255).astype(np.uint8)
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(np.stack([img] * 3, -1)).save(root / "train" / cls / f"{i}.{ext}")
    return root


def test_folder_dataset_trains_and_evaluates(shapes_folder: Path, tmp_path: Path) -> None:
    args = ("--dataset", "folder", "--data-dir", shapes_folder, "--normal-class", "disc")
    trained = last_json(
        deepsvdd(
            "train",
            *args,
            "--epochs",
            "10",
            "--pretrain-epochs",
            "3",
            "--image-size",
            "32",
            "--models-dir",
            tmp_path,
            "--quiet",
            "--batch-size",
            "32",
        )
    )
    assert trained["name"] == "folder-disc"
    assert Path(trained["model_path"]).is_file()
    assert trained["auc"] > 0.6
    evaluated = last_json(deepsvdd("evaluate", trained["model_path"], *args))
    assert evaluated["auc"] == pytest.approx(trained["auc"], abs=1e-3)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("train", "--dataset", "imagenet", "--normal-class", "1"), ("invalid choice", "imagenet")),
        (
            ("train", "--dataset", "mnist", "--normal-class", "1", "--data-dir", "/nonexistent"),
            ("mnist",),
        ),
        (("train", "--dataset", "mnist", "--normal-class", "1", "--nu", "0"), ("nu",)),
        (("train", "--dataset", "mnist", "--normal-class", "1", "--nu", "1.5"), ("nu",)),
        (("train", "--dataset", "fashion-mnist", "--normal-class", "12"), ("12",)),
        (
            (
                "train",
                "--dataset",
                "fashion-mnist",
                "--normal-class",
                "1",
                "--image-size",
                "30",
                "--net",
                "cifar10",
            ),
            ("30",),
        ),
        (
            ("train", "--dataset", "folder", "--normal-class", "x", "--data-dir", "/nonexistent"),
            ("/nonexistent",),
        ),
        (
            (
                "evaluate",
                "/nonexistent/model.onnx",
                "--dataset",
                "fashion-mnist",
                "--normal-class",
                "1",
            ),
            ("model",),
        ),
        (("inspect", "/etc/hostname"), ("ONNX",)),
        (("train", "--dataset", "mnist", "--normal-class", "1", "--name", "../evil"), ("--name",)),
    ],
)
def test_bad_input_ends_in_one_line(
    args: tuple[str, ...], words: tuple[str, ...], tmp_path: Path
) -> None:
    assert_one_line_error(
        deepsvdd(*args, "--models-dir", tmp_path) if args[0] != "inspect" else deepsvdd(*args),
        *words,
    )


def test_normal_class_without_images(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    x = np.random.default_rng(0).integers(0, 255, (20, 28, 28), dtype=np.uint8)
    np.savez(
        path, x_train=x, y_train=np.zeros(20, np.int64), x_test=x, y_test=np.ones(20, np.int64)
    )
    proc = deepsvdd(
        "train",
        "--dataset",
        "npz",
        "--data-dir",
        path,
        "--normal-class",
        "1",
        "--models-dir",
        tmp_path,
    )
    assert_one_line_error(proc, "1")
