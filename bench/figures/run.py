"""The report figures of the ten shipped Fashion-MNIST models (`models/`), drawn by
`deepsvdd report` on each model's test split: <name>-extremes.png, -roc.png and -scores.png.

They are kept here rather than beside the models, so that the service's web page shows none.
Run from the repository root: `.venv/bin/python -m bench.figures --help`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.harness.processes import ROOT
from cli.main import main as deepsvdd
from training.shipped import CLASSES

OUT = Path(__file__).resolve().parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.figures", description=__doc__.splitlines()[0])
    p.add_argument("--classes", nargs="+", choices=CLASSES, default=list(CLASSES))
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX folder")
    p.add_argument("--out", type=Path, default=OUT, help="output folder (bench/figures)")
    return p.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    data = ["--data-dir", str(args.data_dir)] if args.data_dir is not None else []
    for name in (f"fashion-mnist-{c}" for c in args.classes):
        report = ["report", name, "--models-dir", str(args.models_dir), "--out", str(args.out)]
        status = deepsvdd([*report, *data])
        if status:
            raise SystemExit(f"deepsvdd report {name} failed with status {status}")
