"""`python -m bench.train_speed.accuracy`: the test AUC of fp32 and of bf16 training, seed by
seed, on Fashion-MNIST and on a folder of photograph crops; writes accuracy.md and .json."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.resources
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.harness.results import write_json, write_text
from bench.train_speed.report import NORMAL_CLASS, load_average, machine
from training.config import RunSpec, TrainConfig
from training.data import load_dataset
from training.pipeline import train_and_export

OUT = Path(__file__).resolve().parent
PRECISIONS = ("fp32", "bf16")
TOLERANCE = 0.005  # the largest AUC difference for bf16 to count as unchanged
WEAK_AUC = 0.7  # below this mean fp32 AUC, the report says the task is barely learned
CROP = 32
# The normal photograph, and the photographs whose crops are the anomalies (scikit-image's).
NORMAL_PHOTO = "rocket.jpg"
ANOMALY_PHOTOS = ("ihc.png", "retina.jpg", "coffee.png", "chelsea.png", "hubble_deep_field.jpg")


def skimage_photo(name: str) -> Image.Image:
    with importlib.resources.as_file(importlib.resources.files("skimage") / "data" / name) as p:
        return Image.open(p).convert("L")


def crops(
    photo: Image.Image, n: int, rng: np.random.Generator, columns: tuple[float, float], size: int
) -> Iterator[Image.Image]:
    """`n` random `size`-pixel squares whose left edges lie in the share `columns` of the width."""
    width, height = photo.size
    lo, hi = int(columns[0] * width), int(columns[1] * width) - size
    for _ in range(n):
        x, y = int(rng.integers(lo, hi + 1)), int(rng.integers(0, height - size + 1))
        yield photo.crop((x, y, x + size, y + size))


def photo_folder(root: Path, n_train: int, n_test: int, size: int = CROP, seed: int = 0) -> Path:
    """train/normal: crops of the left three quarters of NORMAL_PHOTO; test/normal: of its
    right quarter (no pixel shared); test/other: crops of the other photographs."""
    rng = np.random.default_rng(seed)
    normal = skimage_photo(NORMAL_PHOTO)
    per_photo = n_test // len(ANOMALY_PHOTOS)
    parts = {
        "train/normal": crops(normal, n_train, rng, (0.0, 0.75), size),
        "test/normal": crops(normal, n_test, rng, (0.75, 1.0), size),
        "test/other": (
            crop
            for name in ANOMALY_PHOTOS
            for crop in crops(skimage_photo(name), per_photo, rng, (0, 1), size)
        ),
    }
    for part, images in parts.items():
        (root / part).mkdir(parents=True)
        for i, image in enumerate(images):
            image.save(root / part / f"{i:04d}.png")
    return root


def fashion_npz(path: Path, n_train: int, data_dir: Path | None) -> Path:
    """The first `n_train` Fashion-MNIST training images of class NORMAL_CLASS, the test set."""
    data = load_dataset("fashion-mnist", data_dir)
    normal = data.x_train[data.y_train == NORMAL_CLASS][:n_train]
    assert data.x_test is not None and data.y_test is not None
    x_test, y_test = np.asarray(data.x_test), data.y_test
    np.savez(
        path,
        x_train=normal,
        y_train=np.full(len(normal), NORMAL_CLASS),
        x_test=x_test,
        y_test=y_test,
    )
    return path


def train_one(spec: RunSpec, cfg: TrainConfig) -> dict[str, Any]:
    summary = train_and_export(spec, cfg)
    assert summary is not None
    return {"auc": summary["auc"], "seconds_per_epoch": summary["seconds_per_epoch"]}


def tasks(work: Path, args: argparse.Namespace) -> dict[str, tuple[RunSpec, int, int]]:
    """The two tasks, each (spec, DCAE epochs, Deep SVDD epochs): Fashion-MNIST's class
    NORMAL_CLASS, and the photograph folder (grey)."""
    models = work / "models"
    fashion = fashion_npz(work / "fashion.npz", args.fashion_images, args.data_dir)
    photos = photo_folder(work / "photos", args.photo_crops, args.photo_test)
    return {
        "Fashion-MNIST": (
            RunSpec("npz", str(NORMAL_CLASS), fashion, models_dir=models),
            args.pretrain_epochs,
            args.epochs,
        ),
        "photograph crops": (
            RunSpec("folder", "normal", photos, channels=1, models_dir=models),
            args.photo_pretrain_epochs,
            args.photo_epochs,
        ),
    }


def run_all(work: Path, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Per task, one row per seed: each precision's AUC and seconds per epoch."""
    results: dict[str, list[dict[str, Any]]] = {}
    for task, (spec, pretrain_epochs, epochs) in tasks(work, args).items():
        results[task] = []
        for seed in range(args.seeds):
            row: dict[str, Any] = {"seed": seed}
            for precision in PRECISIONS:
                cfg = TrainConfig(
                    pretrain_epochs=pretrain_epochs,
                    epochs=epochs,
                    seed=seed,
                    precision=precision,  # type: ignore[arg-type]  # one of PRECISIONS
                    channels_last=False,
                )
                quiet = RunSpec(**{**vars(spec), "progress": False, "name": f"m-{precision}"})
                row[precision] = train_one(quiet, cfg)
                print(
                    f"{task} seed {seed} {precision}: AUC {row[precision]['auc']:.4f}", flush=True
                )
            results[task].append(row)
    return results


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| seed | fp32 AUC | bf16 AUC | bf16 - fp32 |", "|---:|---:|---:|---:|"]
    for r in rows:
        fp32, bf16 = r["fp32"]["auc"], r["bf16"]["auc"]
        lines.append(f"| {r['seed']} | {fp32:.4f} | {bf16:.4f} | {bf16 - fp32:+.4f} |")
    means = [float(np.mean([r[p]["auc"] for r in rows])) for p in PRECISIONS]
    lines.append(f"| mean | {means[0]:.4f} | {means[1]:.4f} | {means[1] - means[0]:+.4f} |")
    return lines


def verdict(rows: list[dict[str, Any]]) -> str:
    worst = max(abs(r["bf16"]["auc"] - r["fp32"]["auc"]) for r in rows)
    within = "within" if worst <= TOLERANCE else "NOT within"
    said = f"Largest difference of one seed: {worst:.4f}, {within} {TOLERANCE}."
    fp32 = float(np.mean([r["fp32"]["auc"] for r in rows]))
    if fp32 < WEAK_AUC:
        said += (
            f" fp32 itself barely separates this task on this schedule (mean AUC {fp32:.3f}): "
            "the check shows that bf16 follows fp32 run by run, not that the model detects well."
        )
    return said


def write_report(out: Path, results: dict[str, list[dict[str, Any]]], info: dict[str, str]) -> None:
    lines = [
        "# Detection quality: bf16 against fp32 training",
        "",
        "The test AUC of `deepsvdd train` (`training.pipeline.train_and_export`, thresholds and "
        "export included) with `--precision fp32` and `--precision bf16`, the same seeds, both "
        "in the standard layout; batch 200, the default learning rates.",
        "",
        f"- Fashion-MNIST: the first {info['fashion_images']} training images of class "
        f"{NORMAL_CLASS} (T-shirt/top; 10% held out for the thresholds), the whole test set; "
        f"DCAE pretraining {info['pretrain_epochs']} epochs, Deep SVDD {info['epochs']}.",
        f"- Photograph crops: {CROP}x{CROP} grey crops of scikit-image's photographs. Normal: "
        f"{info['photo_crops']} crops of the left three quarters of `{NORMAL_PHOTO}` for "
        f"training, {info['photo_test']} of its right quarter for the test; anomalies: "
        f"{info['photo_test']} crops of {', '.join(f'`{p}`' for p in ANOMALY_PHOTOS)}. "
        "The MNIST network (the default for grey images); DCAE pretraining "
        f"{info['photo_pretrain_epochs']} epochs, Deep SVDD {info['photo_epochs']}.",
        "",
    ]
    for task, rows in results.items():
        lines += [f"## {task}", "", *table(rows), "", verdict(rows), ""]
    lines += [
        "## Machine and run",
        "",
        f"- {info['cpu']} ({info['nproc']} CPUs), torch {info['torch']} with {info['threads']} "
        "threads. This CPU has no bf16 instructions: PyTorch emulates bf16 (the products' "
        "inputs rounded to bf16, summed in fp32, as native bf16 kernels do in another order), "
        "so the AUCs should carry over to native bf16 (not measured); the times do not "
        "(precision.md).",
        f"- Load average (1, 5, 15 min) before: {info['load_before']}; after: "
        f"{info['load_after']}. Run {info['date']}, {info['wall']} s in all.",
        f"- Command: `{info['command']}`",
        "",
    ]
    write_text(out / "accuracy.md", "\n".join(lines))
    write_json(out / "accuracy.json", {"info": info, "results": results})


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.train_speed.accuracy", description=__doc__.split("\n")[0]
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--pretrain-epochs", type=int, default=3, help="Fashion: DCAE (default 3)")
    p.add_argument("--epochs", type=int, default=6, help="Fashion: Deep SVDD (default 6)")
    p.add_argument("--photo-pretrain-epochs", type=int, default=10, help="DCAE (default 10)")
    p.add_argument("--photo-epochs", type=int, default=20, help="Deep SVDD (default 20)")
    p.add_argument("--fashion-images", type=int, default=1500, help="normal (default 1500)")
    p.add_argument("--photo-crops", type=int, default=600, help="normal crops (default 600)")
    p.add_argument("--photo-test", type=int, default=100, help="test crops a side (default 100)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX folder")
    p.add_argument("--out", type=Path, default=OUT, help="output folder (bench/train_speed)")
    args = p.parse_args(argv)
    if min(args.seeds, args.epochs, args.fashion_images, args.photo_crops, args.photo_test) < 1:
        p.error("--seeds, --epochs and the image counts must be at least 1")
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    info = {"load_before": load_average(), "date": dt.datetime.now().isoformat(timespec="minutes")}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bf16-accuracy-") as work:
        results = run_all(Path(work), args)
    info |= {
        "load_after": load_average(),
        "wall": f"{time.perf_counter() - started:.0f}",
        **{k: str(getattr(args, k)) for k in ("pretrain_epochs", "epochs", "fashion_images")},
        **{k: str(getattr(args, k)) for k in ("photo_crops", "photo_test", "photo_epochs")},
        "photo_pretrain_epochs": str(args.photo_pretrain_epochs),
        "command": shlex.join([".venv/bin/python", "-m", "bench.train_speed.accuracy", *argv]),
        **machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out, results, info)
    print(f"wrote {args.out / 'accuracy.md'} and {args.out / 'accuracy.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
