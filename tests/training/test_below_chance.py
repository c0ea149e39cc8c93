"""A test class that a model scores as more normal than the normal class (AUC below chance) is
said at the end of training: per-class test AUCs, a warning on stderr and in the JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelfile.layout import open_model
from tests.cli.test_cli import deepsvdd, last_json
from training.advice import calibration_warnings
from training.calibration import auc_by_class, calibrate, with_class_aucs


def test_auc_by_class_against_the_normal_test_images() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0, 0.1, 0.2, 0.5])
    classes = np.array([0, 0, 1, 1, 2, 2, 2])
    aucs = auc_by_class(scores, classes, normal=0, names=["good", "worse", "reversed"])
    assert aucs == {"worse": 1.0, "reversed": 0.0}
    assert auc_by_class(scores[2:], classes[2:], normal=0, names=["a", "b", "c"]) == {}


def test_with_class_aucs_needs_a_labelled_test_split() -> None:
    rng = np.random.default_rng(0)
    holdout = rng.random(300)
    cal = calibrate(holdout, holdout, None, None, R=None)
    assert with_class_aucs(cal, None, None, 0, ["good"]) is cal
    scores, classes = np.array([1.0, 2.0, 0.5]), np.array([0, 0, 1])
    assert with_class_aucs(cal, scores, classes, 0, ["good", "bland"]).class_aucs == {"bland": 0.0}


def test_a_class_below_chance_is_warned_of_by_name() -> None:
    rng = np.random.default_rng(0)
    holdout = rng.random(300)
    cal = calibrate(holdout, holdout, rng.random(10), np.repeat([0, 1], 5), R=None)
    cal = type(cal)(**{**cal.__dict__, "auc": 0.9, "class_aucs": {"other": 0.31, "hole": 0.97}})
    [warning] = calibration_warnings(cal, "q0.95")
    assert "'other' (AUC 0.310)" in warning and "MORE normal" in warning
    assert "'hole'" not in warning and "--model patch" in warning
    [patch_warning] = calibration_warnings(cal, "q0.95", "patch")
    assert "'other' (AUC 0.310)" in patch_warning and "--model patch" not in patch_warning


def _part(rng: np.random.Generator, scratched: bool) -> np.ndarray:
    """A 32x32 grey gradient with noise; a scratched one carries a bright line."""
    yy, xx = np.mgrid[:32, :32]
    tilt = rng.uniform(-1, 1, 2)
    img = 120 + 30 * (tilt[0] * yy + tilt[1] * xx) / 32 + rng.normal(0, 6, (32, 32))
    if scratched:
        row = rng.integers(6, 26)
        img[row : row + 2, 4:28] = 250
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scratched_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clean parts to train on and test/good; test/scratched: parts with a bright line, which
    this model ranks backwards: the line raises the image's mean deviation, so global contrast
    normalisation flattens the rest of the part, and a flatter part lies nearer the centre."""
    root = tmp_path_factory.mktemp("scratched")
    rng = np.random.default_rng(0)
    for split, cls, n, scratched in (
        ("train", "good", 120, False),
        ("test", "good", 30, False),
        ("test", "scratched", 30, True),
    ):
        folder = root / split / cls
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_part(rng, scratched)).save(folder / f"{i:03d}.png")
    return root


def test_training_says_so_at_the_end(scratched_folder: Path, tmp_path: Path) -> None:
    proc = deepsvdd(
        "train",
        "--dataset=folder",
        f"--data-dir={scratched_folder}",
        "--normal-class=good",
        f"--models-dir={tmp_path}",
        "--no-pretrain",
        "--epochs=3",
        "--batch-size=32",
        "--threads=1",
        "--quiet",
        "--decode=full",
    )
    result = last_json(proc)
    assert open_model(Path(result["model_path"]))[1].decode == "full"  # --decode reached it
    auc = result["test_auc_by_class"]["scratched"]
    assert auc < 0.5 and result["auc"] == pytest.approx(auc)
    [warning] = [w for w in result["warnings"] if "below chance" in w]
    assert f"'scratched' (AUC {auc:.3f})" in warning
    assert f"deepsvdd train: warning: {warning}" in proc.stderr
    # test/good is drawn like train/good: its false-alarm rates are reported, not warned of
    assert set(result["test_normal_rates"]) == set(result["thresholds"])
    assert not [w for w in result["warnings"] if "differ from the training images" in w]
