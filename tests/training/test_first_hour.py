"""Issue 17, the training side: a new user's small folder of good and scratched parts, with
two corrupt files, trained, evaluated and reported as the walk-through of docs/training.md does."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_cli import assert_one_line_error, deepsvdd, last_json

QUICK = ("--no-pretrain", "--epochs", "6", "--batch-size", "32", "--seed", "0")


def part(rng: np.random.Generator, scratched: bool) -> np.ndarray:
    """A 32x32 RGB 'part': a smooth grey-blue gradient with noise; scratched ones carry a
    bright diagonal line."""
    yy, xx = np.mgrid[:32, :32]
    tilt = rng.uniform(-1, 1, 2)
    base = 110 + 30 * (tilt[0] * yy + tilt[1] * xx) / 32
    img = np.stack([base, base + 10, base + 30], -1) + rng.normal(0, 6, (32, 32, 3))
    if scratched:
        offset, slope = rng.integers(-10, 10), rng.uniform(0.5, 2)
        line = np.abs(yy - (slope * (xx - 16) + 16 + offset)) < 1.2
        img[line] = 250
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/good (150 + 2 corrupt files), train/scratched (30), test/good and test/scratched
    (40 each)."""
    root = tmp_path_factory.mktemp("parts")
    rng = np.random.default_rng(0)
    for split, counts in (
        ("train", {"good": 150, "scratched": 30}),
        ("test", {"good": 40, "scratched": 40}),
    ):
        for cls, n in counts.items():
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(part(rng, cls == "scratched")).save(folder / f"{i:03d}.png")
    (root / "train" / "good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    truncated = (root / "train" / "good" / "000.png").read_bytes()[:-40]
    (root / "train" / "good" / "truncated.png").write_bytes(truncated)
    return root


@pytest.fixture(scope="module")
def trained(parts: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`deepsvdd train` on the parts, not quiet, with --resume and --threads: the user's run."""
    models = tmp_path_factory.mktemp("models")
    proc = deepsvdd(
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        parts,
        "--normal-class",
        "good",
        "--name",
        "parts-good",
        "--models-dir",
        models,
        "--resume",
        "--threads",
        "1",
        *QUICK,
    )
    return {"result": last_json(proc), "stderr": proc.stderr, "models": models}


def test_warnings_say_what_to_try(trained: dict[str, Any]) -> None:
    """17.1 and 17.2: the small held-out set is warned about, on stderr and in the JSON."""
    result, stderr = trained["result"], trained["stderr"]
    small = [w for w in result["warnings"] if "held-out normal images" in w]
    assert len(small) == 1 and "Add normal images" in small[0]
    assert f"deepsvdd train: warning: {small[0]}" in stderr


def test_low_auc_warning_names_remedies() -> None:
    from training.advice import calibration_warnings
    from training.calibration import calibrate

    rng = np.random.default_rng(0)
    holdout = rng.random(300)
    cal = calibrate(holdout, holdout, rng.random(100), np.repeat([0, 1], 50), R=None)
    [warning] = calibration_warnings(cal, "q0.95")  # 300 held out: only the AUC is warned of
    assert cal.auc is not None and cal.auc < 0.6
    assert f"{cal.auc:.3f}" in warning and "--epochs" in warning and "--pretrain" in warning


def test_thresholds_rest_on_enough_images_with_intervals(trained: dict[str, Any]) -> None:
    """17.2: half of a small class is held out (not 10%), and the count and the
    Clopper-Pearson intervals are stored."""
    result = trained["result"]
    calibration = result["calibration"]
    assert calibration["n"] == 75 and result["n_train"] == 75  # 150 readable good images
    assert calibration["method"] == "holdout" and calibration["confidence"] == 0.95
    for name, (low, high) in calibration["rate_interval"].items():
        assert 0 <= low <= high <= 1, name
    low, high = calibration["rate_interval"]["max"]
    assert low == 0 and high == pytest.approx(1 - 0.025 ** (1 / 75))


def test_holdout_size_and_clopper_pearson() -> None:
    from scipy.stats import binomtest

    from modelfile.stats import clopper_pearson
    from training.calibration import holdout_size

    assert holdout_size(6000, 0.1) == 600  # large classes: 10% as before
    assert holdout_size(400, 0.1) == 200  # a small class still gets 200
    assert holdout_size(150, 0.1) == 75  # a tiny one: half
    assert holdout_size(2, 0.1) == 1
    ci = binomtest(10, 200).proportion_ci(0.95, method="exact")
    assert clopper_pearson(10, 200) == pytest.approx([ci.low, ci.high])


def test_old_models_without_calibration_still_load() -> None:
    from modelfile.layout import open_model

    _, meta = open_model(Path("models/fashion-mnist-bag/1/model.onnx"))
    assert meta.calibration is None


def test_unreadable_files_are_skipped_and_listed(trained: dict[str, Any]) -> None:
    """17.7: both corrupt files at once, with a count, a list and a warning."""
    result, stderr = trained["result"], trained["stderr"]
    assert result["n_skipped"] == 2
    assert sorted(Path(s["file"]).name for s in result["skipped"]) == [
        "broken.png",
        "truncated.png",
    ]
    assert "warning: skipped 2 unreadable image file(s)" in stderr


def test_strict_stops_at_the_first_unreadable_file(parts: Path, tmp_path: Path) -> None:
    proc = deepsvdd(
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        parts,
        "--normal-class",
        "good",
        "--models-dir",
        tmp_path,
        "--strict",
        *QUICK,
    )
    assert_one_line_error(proc, "broken.png", "--strict")


def test_smaller_points_of_the_first_run(trained: dict[str, Any]) -> None:
    """17.9: a line before the slow start, the loss in the bar, --resume without a
    checkpoint said, AUC in full in the JSON and to 3 decimals in the human line."""
    result, stderr = trained["result"], trained["stderr"]
    lines = stderr.splitlines()
    assert lines[0].startswith("deepsvdd train: starting")
    assert any(line.startswith("deepsvdd train: loading folder data") for line in lines)
    assert "loss=" in stderr
    assert "--resume: no checkpoint at" in stderr and "starting afresh" in stderr
    assert result["threads"] == 1
    assert f"(test AUC {result['auc']:.3f})" in stderr
    assert len(repr(result["auc"])) > 6  # not rounded


def test_evaluate_reads_dataset_and_class_from_the_model(trained: dict[str, Any]) -> None:
    """17.3: no --dataset or --normal-class needed; the model's AUC comes back."""
    models = trained["models"]
    result = last_json(deepsvdd("evaluate", "parts-good", "--models-dir", models))
    assert result["dataset"] == "folder" and result["normal_class"] == "good"
    assert result["auc"] == pytest.approx(trained["result"]["auc"], abs=1e-6)
    assert result["threshold"] == "q0.95"


def test_evaluate_refuses_a_contradicting_class(trained: dict[str, Any]) -> None:
    models = trained["models"]
    proc = deepsvdd("evaluate", "parts-good", "--normal-class", "scratched", "--models-dir", models)
    assert_one_line_error(proc, "'scratched'", "'good'", "--allow-other-class")
    other = last_json(
        deepsvdd(
            "evaluate",
            "parts-good",
            "--normal-class",
            "scratched",
            "--allow-other-class",
            "--models-dir",
            models,
        )
    )
    assert other["normal_class"] == "scratched"
    assert other["auc"] == pytest.approx(1 - trained["result"]["auc"], abs=1e-6)


def test_evaluate_takes_a_threshold_by_name_or_value(trained: dict[str, Any]) -> None:
    models = trained["models"]
    at_max = last_json(
        deepsvdd("evaluate", "parts-good", "--threshold", "max", "--models-dir", models)
    )
    assert at_max["threshold_value"] == trained["result"]["thresholds"]["max"]
    at_zero = last_json(
        deepsvdd("evaluate", "parts-good", "--threshold", "0", "--models-dir", models)
    )
    assert at_zero["false_positive_rate"] == 1.0 and at_zero["true_positive_rate"] == 1.0
    bad = deepsvdd("evaluate", "parts-good", "--threshold", "q0.5", "--models-dir", models)
    assert_one_line_error(bad, "q0.5", "q0.95")


def test_report_writes_next_to_the_model_readable_with_anomalies_framed(
    trained: dict[str, Any],
) -> None:
    """17.4: <model>/<version>/report/ by default, mode 0644, where printed; red frames."""
    models = trained["models"]
    proc = deepsvdd("report", "parts-good", "--models-dir", models)
    paths = last_json(proc)
    report_dir = models / "parts-good" / "1" / "report"
    assert Path(paths["extremes"]).parent == report_dir
    assert f"wrote 3 figures to {report_dir}" in proc.stderr
    for kind in ("extremes", "roc", "scores"):
        assert os.stat(paths[kind]).st_mode & 0o777 == 0o644
    pixels = np.asarray(Image.open(paths["extremes"]).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red.sum() > 100  # anomalies among the extremes are framed


def test_extremes_without_anomalies_have_no_red(tmp_path: Path) -> None:
    from training.report import plot_extremes

    images = np.full((20, 8, 8, 1), 128, np.uint8)
    scores = np.arange(20.0)
    for labels, expect_red in ((np.zeros(20, np.int64), False), (np.ones(20, np.int64), True)):
        path = plot_extremes(images, scores, tmp_path / "x.png", n=4, labels=labels)
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
        red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
        assert bool(red.sum() > 20) == expect_red


def test_deep_sad_from_train_subfolders(parts: Path, tmp_path: Path) -> None:
    """17.8 / Deep SAD: train/scratched labelled with --anomaly-classes; recorded in the
    metadata; exported within 1e-4 of PyTorch."""
    proc = deepsvdd(
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        parts,
        "--normal-class",
        "good",
        "--anomaly-classes",
        "scratched",
        "--labelled-fraction",
        "0.5",
        "--name",
        "parts-sad",
        "--models-dir",
        tmp_path,
        "--quiet",
        *QUICK,
    )
    result = last_json(proc)
    assert result["labelled"]["anomaly_classes"] == ["scratched"]
    assert result["labelled"]["n_labelled_anomalies"] == 15
    assert result["labelled"]["eta"] == 1.0 and result["labelled"]["eps"] == 1e-6
    assert result["export_rel_diff"] < 1e-4
    meta = json.loads(deepsvdd("inspect", "parts-sad", "--models-dir", tmp_path).stdout)
    assert meta["training"]["method"] == "deep-sad" and meta["objective"] == "one-class"
    assert meta["calibration"]["n"] == 75  # the labelled anomalies are not in the hold-out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--anomaly-classes", "dented"), ("dented", "scratched")),
        (("--anomaly-classes", "good"), ("normal class",)),
        (("--anomaly-classes", "scratched", "--objective", "soft-boundary"), ("one-class",)),
        (("--anomaly-classes", "scratched", "--labelled-fraction", "1.5"), ("(0, 1]",)),
    ],
)
def test_deep_sad_bad_arguments(
    parts: Path, tmp_path: Path, extra: tuple[str, ...], words: tuple[str, ...]
) -> None:
    proc = deepsvdd(
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        parts,
        "--normal-class",
        "good",
        "--models-dir",
        tmp_path,
        *extra,
        *QUICK,
    )
    # The corrupt files' warning may come first; the error is the last line, and one line.
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("deepsvdd train: error:")
    assert all(word in last for word in words), last
