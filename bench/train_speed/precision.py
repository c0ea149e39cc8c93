"""`python -m bench.train_speed.precision`: images/s per phase in fp32 and bf16, standard and
channels-last layout, for the paper's networks; writes precision.md and precision.json."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from bench.harness.results import write_json, write_text
from bench.train_speed.patch_variants import PATCH_SIZE, SIDE, measure_patch, patch_images
from bench.train_speed.report import NORMAL_CLASS, load_average, machine
from bench.train_speed.variants import (
    MAX_EPOCHS,
    NETWORKS,
    VARIANTS,
    WARMUP_IMAGES,
    Point,
    measure_network,
)
from bench.train_speed.variants import network_images as images_for
from training.data import load_dataset
from training.patch.fit import IMAGES_PER_STEP, PAIRS_PER_IMAGE
from training.precision import NATIVE_BF16_FLAGS, cpu_flags, native_bf16

OUT = Path(__file__).resolve().parent
# What the networks train on, by --synthetic.
DATA_NOTE = {
    False: f"The MNIST network trains on Fashion-MNIST (class {NORMAL_CLASS}), the CIFAR-10 and "
    "GTSRB networks on uniform-noise RGB images of their 32x32 input, the patch model on "
    f"uniform-noise grey {SIDE}x{SIDE} images with {PATCH_SIZE} px patches (pixel values do "
    "not change the cost).",
    True: "Every network trains on uniform-noise images of its input, the patch model on "
    f"grey {SIDE}x{SIDE} images with {PATCH_SIZE} px patches (pixel values do not change the "
    "cost).",
}


def figure(value: float) -> str:
    """Images/s: whole numbers, one decimal below 10."""
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def table(points: list[Point], rate: str) -> list[str]:
    """One row per (network, phase): each variant's images/s and its ratio to fp32."""
    labels = [label for label, _, _ in VARIANTS]
    lines = [
        f"| network | phase | images | epochs | {' | '.join(labels)} |",
        "|---|---|---:|---|" + "---:|" * len(labels),
    ]
    for network in dict.fromkeys(p.network for p in points):
        for phase in dict.fromkeys(p.phase for p in points if p.network == network):
            row = {p.variant: p for p in points if (p.network, p.phase) == (network, phase)}
            base = getattr(row[labels[0]], rate)
            cells = [
                f"{figure(getattr(row[v], rate))} ({getattr(row[v], rate) / base:.2f}x)"
                for v in labels
            ]
            epochs = ", ".join(str(row[v].epochs) for v in labels)
            lines.append(
                f"| {network} | {phase} | {row[labels[0]].images:,} | {epochs} "
                f"| {' | '.join(cells)} |"
            )
    return lines


def write_report(out: Path, points: list[Point], info: dict[str, str]) -> None:
    lines = [
        "# Training speed: fp32 and bf16, standard and channels-last layout",
        "",
        "Images per second of each training phase, `deepsvdd train`'s own loops "
        "(`training.deepsvdd.pretrain_dcae`, `train_deepsvdd`) with `--precision` and "
        "`--channels-last` set as each column says; in brackets the ratio to fp32 in the "
        "standard layout. Batch 200, Adam (the patch model: its own step, "
        f"`bench/train_speed/patch_variants.py`, {info['patch_step']}; `deepsvdd train --model "
        "patch` trains in fp32 and the standard layout); "
        f"per variant, a warm-up epoch of {WARMUP_IMAGES} images, then as many epochs as take "
        f"about {info['seconds']} CPU seconds (the epochs column; at most {MAX_EPOCHS}). "
        f"{info['data']}",
        "",
        "## Wall time",
        "",
        *table(points, "per_s"),
        "",
        "## CPU time",
        "",
        "Images per CPU second of this process (less inflated than wall time on a shared "
        "machine; on a GPU it counts the host's work only).",
        "",
        *table(points, "per_cpu_s"),
        "",
        "## Machine and run",
        "",
        f"- Device {info['device']}: {info['cpu']} ({info['nproc']} CPUs), torch {info['torch']} "
        f"with {info['threads']} threads; bf16 native on this device: {info['native_bf16']} "
        f"(CPU flags: {info['bf16_flags'] or 'no amx_bf16, no avx512_bf16'}).",
        f"- Load average (1, 5, 15 min) before: {info['load_before']}; after: "
        f"{info['load_after']}. Other processes share the machine: the figures are upper "
        "bounds for the time.",
        f"- Run {info['date']}, {info['wall']} s in all.",
        f"- Command: `{info['command']}`",
        "",
    ]
    write_text(out / "precision.md", "\n".join(lines))
    write_json(out / "precision.json", {"info": info, "points": [asdict(p) for p in points]})


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.train_speed.precision", description=__doc__.split("\n")[0]
    )
    choices = (*NETWORKS, "patch")
    p.add_argument("--networks", nargs="+", choices=choices, default=list(choices))
    p.add_argument("--images", type=int, default=1000, help="MNIST network (default 1000)")
    p.add_argument("--rgb-images", type=int, default=200, help="RGB networks (default 200)")
    p.add_argument("--patch-images", type=int, default=64, help="patch model (default 64)")
    p.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="CPU seconds to time per variant, in whole epochs (at least 1; default 3)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX folder")
    p.add_argument("--synthetic", action="store_true", help="noise images for every network")
    p.add_argument("--out", type=Path, default=OUT, help="output folder (bench/train_speed)")
    args = p.parse_args(argv)
    if min(args.images, args.rgb_images, args.patch_images) < 1 or not args.seconds > 0:
        p.error("--images, --rgb-images and --patch-images must be at least 1, --seconds above 0")
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    info = {"load_before": load_average(), "date": dt.datetime.now().isoformat(timespec="minutes")}
    started = time.perf_counter()
    fashion = None
    if not args.synthetic:
        data = load_dataset("fashion-mnist", args.data_dir)
        fashion = data.x_train[data.y_train == NORMAL_CLASS]
    points = []
    for network in args.networks:
        if network == "patch":
            points += measure_patch(patch_images(args.patch_images), args.seconds, args.device)
            continue
        n = args.images if NETWORKS[network][0] == 1 else args.rgb_images
        images = images_for(network, fashion, n)
        points += measure_network(network, images, args.seconds, args.device)
    device = torch.device(args.device)
    info |= {
        "load_after": load_average(),
        "wall": f"{time.perf_counter() - started:.0f}",
        "seconds": str(args.seconds),
        "data": DATA_NOTE[args.synthetic],
        "patch_step": f"{IMAGES_PER_STEP} images a step, {PAIRS_PER_IMAGE} pairs of each kind "
        "per image",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "native_bf16": str(native_bf16(device)).lower(),
        "bf16_flags": " ".join(sorted(cpu_flags() & NATIVE_BF16_FLAGS)),
        "command": shlex.join([".venv/bin/python", "-m", "bench.train_speed.precision", *argv]),
        **machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out, points, info)
    print(f"wrote {args.out / 'precision.md'} and {args.out / 'precision.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
