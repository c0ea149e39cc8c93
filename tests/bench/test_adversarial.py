"""bench/adversarial end to end on a small GTSRB fixture in the real on-disk format."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]
# Stop signs (14) and two other classes, each a noisy sign of its own colour.
COLOURS = {1: (40, 200, 40), 14: (220, 30, 30), 17: (40, 40, 220)}
TRAIN, TEST = {1: 30, 14: 40, 17: 30}, {1: 8, 14: 30, 17: 8}
N_ADVERSARIAL = 10


def sign(colour: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    """A 44x40 picture: grey margin, the sign (ROI x 4..39, y 3..36) with a pale centre."""
    img = rng.integers(90, 130, (40, 44, 3))
    img[3:37, 4:40] = colour
    img[12:28, 13:31] = 235
    noisy = np.clip(img + rng.normal(0, 18, img.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy)


def write_signs(folder: Path, csv_path: Path, counts: dict[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    new = not csv_path.exists()
    with csv_path.open("a", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        if new:
            writer.writerow(HEADER)
        for class_id, n in counts.items():
            for i in range(n):
                name = f"{class_id:05d}_{i:05d}.ppm"
                sign(COLOURS[class_id], rng).save(folder / name)
                writer.writerow([name, 44, 40, 4, 3, 39, 36, class_id])


def write_gtsrb(root: Path) -> None:
    """Final_Training/Images/<class>/GT-<class>.csv and Final_Test/Images + GT-final_test.csv."""
    train = root / "GTSRB" / "Final_Training" / "Images"
    for class_id, n in TRAIN.items():
        folder = train / f"{class_id:05d}"
        write_signs(folder, folder / f"GT-{class_id:05d}.csv", {class_id: n}, class_id)
    test = root / "GTSRB" / "Final_Test" / "Images"
    write_signs(test, test / "GT-final_test.csv", TEST, 99)


def run_bench(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable,
        "-m",
        "bench.adversarial",
        "--dataset",
        "gtsrb",
        "--data-dir",
        str(root),
        "--out",
        str(out),
        "--n-adversarial",
        str(N_ADVERSARIAL),
        "--classifier-epochs",
        "15",
        "--pretrain-epochs",
        "2",
        "--epochs",
        "2",
        "--anogan-epochs",
        "1",
        "--anogan-steps",
        "3",
        "--boundary-steps",
        "30",
        *extra,
    ]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(root)}
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=280)


@pytest.mark.slow
def test_gtsrb_protocol_end_to_end(tmp_path: Path) -> None:
    write_gtsrb(tmp_path / "data")
    out = tmp_path / "out"
    done = run_bench(tmp_path / "data", out, "--seeds", "0", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "gtsrb.json").read_text())
    s = results["schedule"]
    assert s["attacks"] == ["boundary"] and s["batch_size"] == 64
    attack = results["sets"]["00014"]["boundary"]
    # Every stop sign the classifier gets right is attacked; the decision-based attack starts
    # from a misclassified image and keeps it misclassified.
    assert attack["n_input"] == 15 and attack["n_success"] == attack["n_attacked"]
    assert attack["n_kept"] == min(N_ADVERSARIAL, attack["n_success"])
    with np.load(out / "gtsrb-00014-sets.npz") as f:
        assert len(f["normal"]) == TEST[14]  # every test stop sign is in the normal part
        assert f["boundary"].shape == (attack["n_kept"], 3, 32, 32)
        assert set(f["boundary_source"]) <= set(f["normal"])
    assert sorted(results["runs"]) == ["00014/0", "00014/1"]
    run = results["runs"]["00014/0"]
    methods = {"ocsvm", "kde", "iforest", "dcae", "anogan", "one-class"}
    assert methods | {"soft-boundary-nu0.01", "soft-boundary-nu0.1"} == set(run["auc"]["boundary"])
    assert all(0.0 <= v <= 1.0 for v in run["auc"]["boundary"].values())
    assert run["n_eval"]["boundary"] == round(0.9 * (TEST[14] + attack["n_kept"]))
    assert run["n_train"] == TRAIN[14]
    report = (out / "gtsrb.md").read_text()
    for head in ("Table 2: Boundary Attack", "One-class Deep SVDD", "AnoGAN", "80.3 ± 2.8"):
        assert head in report
    assert (out / "figure4-gtsrb-00014.png").stat().st_size > 0

    # A resumed run with the same flags has nothing left to do; other flags are refused.
    again = run_bench(tmp_path / "data", out, "--seeds", "0", "1", "--resume")
    assert again.returncode == 0 and "detectors" not in again.stdout
    other = run_bench(tmp_path / "data", out, "--seeds", "0", "--resume", "--epochs", "3")
    assert other.returncode != 0 and "schedule" in other.stderr
