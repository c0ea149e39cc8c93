"""Full against reduced JPEG decoding: time per image on one thread for 1 and 12 MP photographs,
and the test AUC of Deep SVDD retrained under each policy on a folder of photograph crops.

Run from the repository root: `.venv/bin/python -m bench.decode --help`. Writes decode.json
and decode.md into --out (default: this folder).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.decode.photos import write_folder
from bench.decode.quality import auc_summary, quality_rows
from bench.decode.report import markdown
from bench.decode.timing import jpeg_rows, lossless_rows
from bench.harness.machine import machine_record
from bench.harness.results import write_json, write_text

OUT = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.decode", description=__doc__)
    p.add_argument("--out", type=Path, default=OUT, help="where decode.{json,md} go")
    p.add_argument("--input-size", type=int, default=128, help="the timed model's input side")
    p.add_argument("--repeats-1mp", type=int, default=5, help="timed passes over the 1 MP set")
    p.add_argument("--repeats-12mp", type=int, default=2, help="timed passes over the 12 MP set")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--image-size", type=int, default=32, help="the retrained models' input side")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--n-train", type=int, default=200, help="crops of the normal photograph")
    p.add_argument("--n-test", type=int, default=60, help="test crops of every photograph")
    p.add_argument("--skip-quality", action="store_true", help="time the decoders only")
    return p.parse_args(argv)


def quality(args: argparse.Namespace) -> dict[str, Any]:
    schedule = {
        "image_size": args.image_size,
        "epochs": args.epochs,
        "pretrain_epochs": args.pretrain_epochs,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "seeds": args.seeds,
    }
    with tempfile.TemporaryDirectory(prefix="decode-folder-") as tmp:
        counts = write_folder(Path(tmp), args.n_train, args.n_test)
        rows = quality_rows(Path(tmp), args.seeds, schedule)
    return {"schedule": schedule, "files": counts, "runs": rows, "summary": auc_summary(rows)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.time()
    results: dict[str, Any] = {
        "command": shlex.join(
            ["python", "-m", "bench.decode", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine_before": machine_record(),
    }
    repeats = {"1 MP": args.repeats_1mp, "12 MP": args.repeats_12mp}
    print("timing JPEG decoding...", flush=True)
    results["jpeg"] = jpeg_rows(args.input_size, repeats)
    print("timing PNG and WebP decoding...", flush=True)
    results["lossless"] = lossless_rows(args.input_size, repeats)
    if not args.skip_quality:
        print("retraining under each decode policy...", flush=True)
        results["quality"] = quality(args)
    results["machine_after"] = machine_record()
    results["seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "decode.json", results)
    write_text(args.out / "decode.md", markdown(results))
    print(f"wrote {args.out / 'decode.md'}")
