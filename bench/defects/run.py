"""`python -m bench.defects`: trains each method on each report surface and seed with the
`deepsvdd train` CLI, scores the held-out test crops and their maps, and measures speed.

Resumable in pieces: each (surface, method, seed) writes runs/<surface>-<method>-<seed>.json
(runs/<surface>-<split>-<method>-<seed>.json for a split other than `rows`), and a piece
already written is skipped, so a killed run continues where it stopped. The
report (defects.md, defects.json) is rebuilt from all pieces at the end of every run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.defects import report
from bench.defects.evaluate import at_threshold, evaluate
from bench.defects.plant import KINDS
from bench.defects.score import metadata, score_kind, session
from bench.defects.speed import raw_speed, served_speed
from bench.defects.surfaces import REPORT_SURFACES, SPLITS, Counts, build
from bench.harness.machine import cpu_line
from bench.harness.progress import now
from bench.harness.results import write_json
from modelfile.pixels import to_input
from training.data.images import read_image

OUT = Path(__file__).resolve().parent
# Method -> extra `deepsvdd train` arguments.
METHODS: dict[str, list[str]] = {
    "image": [],  # the default model: whole-image Deep SVDD
    "patch": ["--model", "patch"],  # its default: the untrained encoder, BatchNorm fitted
    # Patch SVDD's own training (relative position + SVDD'), 20 passes: the default until the
    # untrained encoder measured better on the tuning surfaces.
    "patch-svdd20": ["--model", "patch", "--patch-epochs", "20", "--patch-objective", "position"],
    # The encoder trained 20 passes to find synthetic anomalies made from the normal crops.
    "patch-synthetic20": ["--model", "patch", "--patch-epochs", "20"],
}
SERVED_SEED = 0  # /score is measured with this seed's models only (a service start each)
SUMMARY_KEYS = (
    "auc",
    "test_auc_by_class",
    "train_seconds",
    "total_seconds",
    "n_train",
    "warnings",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.defects", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    p.add_argument("--surfaces", default=",".join(REPORT_SURFACES))
    p.add_argument("--methods", default="image", help=f"of {', '.join(METHODS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument(
        "--split",
        choices=sorted(SPLITS),
        default="rows",
        help="training and test regions of each photograph (bench/defects/surfaces.py)",
    )
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--speed-seconds", type=float, default=3.0, help="per speed measurement")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "deepsvdd-defects")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    unknown = sorted(set(args.methods.split(",")) - set(METHODS))
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; choose of {', '.join(METHODS)}")
    return args


def train_command(args: argparse.Namespace, data: Path, method: str, seed: int) -> list[str]:
    return [
        str(Path(sys.executable).with_name("deepsvdd")),
        "train",
        "--dataset=folder",
        f"--data-dir={data}",
        "--normal-class=good",
        f"--image-size={args.image_size}",
        f"--pretrain-epochs={args.pretrain_epochs}",
        f"--epochs={args.epochs}",
        f"--seed={seed}",
        "--threads=1",
        "--quiet",
        f"--models-dir={args.work / 'models'}",
        f"--name={data.name}-{method}",
        *METHODS[method],
    ]


def trained(args: argparse.Namespace, data: Path, method: str, seed: int) -> dict[str, Any]:
    """Trains (unless a finished training's summary is in the work folder): its summary, or
    {"error": the CLI's last stderr line} when training failed."""
    done = args.work / f"{data.name}-{method}.train.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    command = train_command(args, data, method, seed)
    print(f"{now()} {shlex.join(command)}", flush=True)
    answer = subprocess.run(command, capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        error = (answer.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"{now()} training failed ({answer.returncode}): {error}", flush=True)
        return {"error": error, "command": shlex.join(command)}
    summary = {key: json.loads(answer.stdout).get(key) for key in SUMMARY_KEYS}
    summary["command"] = shlex.join(command)
    write_json(done, summary)
    return summary


def measure(args: argparse.Namespace, data: Path, method: str, seed: int) -> dict[str, Any]:
    """One piece: train, score every test class (with maps), and time the model; a failed
    training is a piece too, with its error (it is not retried)."""
    summary = trained(args, data, method, seed)
    if "error" in summary:
        return {"training": summary}
    model = args.work / "models" / f"{data.name}-{method}" / "1" / "model.onnx"
    sess = session(model)
    good = score_kind(sess, data, "good")
    tested = {kind: score_kind(sess, data, kind) for kind in KINDS}
    tested["other"] = score_kind(sess, data, "other", with_maps=False)
    size = sess.get_inputs()[0].shape[2]
    pixels = [read_image(p, "L", size) for p in sorted((data / "test" / "good").iterdir())]
    piece: dict[str, Any] = {
        "training": summary,
        **evaluate(good, tested, with_maps=True),
        "at_threshold": at_threshold(good, tested, metadata(sess)),
        "raw_images_per_s": raw_speed(model, to_input(np.stack(pixels)), args.speed_seconds),
        "model_bytes": model.stat().st_size,
    }
    return piece


def split_suffix(args: argparse.Namespace) -> str:
    """What names of data folders, models and pieces carry of the split: nothing for `rows`."""
    return "" if args.split == "rows" else f"-{args.split}"


def where(args: argparse.Namespace, surface: str) -> str:
    """`surface`, with the split named unless it is `rows` (piece names)."""
    return f"{surface}{split_suffix(args)}"


def data_dir(args: argparse.Namespace, surface: str, seed: int) -> Path:
    """The work folder of one surface, seed and split's dataset."""
    return args.work / "data" / f"{surface}-{seed}{split_suffix(args)}"


def measure_served(args: argparse.Namespace, surface: str, method: str) -> None:
    """/score images/s of seed SERVED_SEED's model, into served/<surface>-<method>.json (once:
    delete the file to measure again, e.g. after the service has changed)."""
    path = args.out / "served" / f"{where(args, surface)}-{method}.json"
    data = data_dir(args, surface, SERVED_SEED)
    model = args.work / "models" / f"{data.name}-{method}" / "1" / "model.onnx"
    if path.exists() or not model.exists():
        return
    size = session(model).get_inputs()[0].shape[2]
    crops = [read_image(p, "L", size)[..., 0] for p in sorted((data / "test" / "good").iterdir())]
    speed = served_speed(
        args.work / "models", model.parent.parent.name, crops, args.speed_seconds, args.work
    )
    meta = {"surface": surface, "split": args.split, "method": method, "seed": SERVED_SEED}
    write_json(path, {**meta, "cpu": cpu_line(1), "served_images_per_s": speed})
    print(f"{now()} wrote {path}", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    (args.out / "served").mkdir(parents=True, exist_ok=True)
    schedule = {
        "image_size": args.image_size,
        "pretrain_epochs": args.pretrain_epochs,
        "epochs": args.epochs,
        "counts": vars(Counts()),
    }
    for seed in map(int, args.seeds.split(",")):
        for surface in args.surfaces.split(","):
            data = build(data_dir(args, surface, seed), surface, seed, split=args.split)
            for method in args.methods.split(","):
                path = args.out / "runs" / f"{where(args, surface)}-{method}-{seed}.json"
                if path.exists():
                    continue
                piece = measure(args, data, method, seed)
                meta = {"surface": surface, "split": args.split, "method": method, "seed": seed}
                meta["cpu"] = cpu_line(1)
                write_json(path, {**meta, "schedule": schedule, **piece})
                print(f"{now()} wrote {path}", flush=True)
    for surface in args.surfaces.split(","):
        for method in args.methods.split(","):
            measure_served(args, surface, method)
    report.write(args.out)
