"""The paper's Table 1 (Fashion-MNIST; MNIST and CIFAR-10 with --dataset): test AUC of Deep SVDD
(one-class, soft-boundary), the DCAE and the shallow baselines for each class as normal; results
kept in table1.json as they come.

Run from the repository root: `.venv/bin/python -m bench.table1 --help`.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

import torch

from bench.harness.machine import cpu_line
from bench.harness.progress import now
from bench.harness.results import load_results, save_results
from bench.table1.report import write_report
from bench.table1.runs import evaluation_indices, run_deep, run_shallow
from bench.table1.schedule import DATASET, HOLDOUT, OUT, Schedule
from training.data import ImageSet, load_dataset, resolve_class
from training.data.download import download_missing
from training.networks import make_config
from training.run import DEFAULT_ARCH, split_normal

RESULTS_TABLES = ("deep", "shallow")
RESULTS_SETS = ("classes", "seeds")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.table1", description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrain-epochs", type=int, default=50, help="DCAE epochs (default 50)")
    p.add_argument("--epochs", type=int, default=50, help="Deep SVDD epochs (default 50)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--classes", nargs="+", default=None, help="class names or indices (default: all ten)"
    )
    p.add_argument("--dataset", choices=("fashion-mnist", "mnist", "cifar10"), default=DATASET)
    p.add_argument("--data-dir", type=Path, default=None, help="the dataset's folder")
    p.add_argument("--download", action="store_true", help="fetch the dataset if absent")
    p.add_argument("--out", type=Path, default=OUT, help="output folder (bench/table1)")
    p.add_argument(
        "--resume", action="store_true", help="continue table1.json, skipping what is done"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: see bench/README.md)"
    )
    p.add_argument(
        "--no-soft-boundary",
        action="store_true",
        help="train only the DCAE and one-class Deep SVDD (for the paper's full schedule)",
    )
    args = p.parse_args(argv)
    if args.pretrain_epochs < 1 or args.epochs < 1:
        p.error("--pretrain-epochs and --epochs must be at least 1")
    return args


def fresh_results(schedule: Schedule) -> dict[str, Any]:
    return {
        "schedule": schedule.to_dict(),
        "classes": [],
        "seeds": [],
        "commands": [],
        "deep": {},
        "shallow": {},
    }


def save(path: Path, results: dict[str, Any]) -> None:
    save_results(path, results, RESULTS_TABLES, RESULTS_SETS)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.download:
        download_missing(args.dataset, args.data_dir)
    data: ImageSet = load_dataset(args.dataset, args.data_dir)
    wanted = args.classes if args.classes is not None else range(len(data.class_names))
    classes = tuple(dict.fromkeys(resolve_class(data, c) for c in wanted))
    schedule = Schedule(args.pretrain_epochs, args.epochs, not args.no_soft_boundary)
    _, height, width, channels = data.x_train.shape
    net_cfg = make_config(DEFAULT_ARCH[args.dataset], channels, height, width)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "table1.json"
    results = load_results(path, fresh_results(schedule), args.resume)
    if results.setdefault("dataset", args.dataset) != args.dataset:
        raise SystemExit(f"{path} holds {results['dataset']} results; use another --out")
    results["commands"].append(shlex.join([".venv/bin/python", "-m", "bench.table1", *argv]))
    results["classes"] = sorted({*results["classes"], *classes})
    results["seeds"] = sorted({*results["seeds"], *args.seeds})
    results["machine"] = cpu_line(torch.get_num_threads())
    save(path, results)

    for k in classes:
        name = data.class_names[k]
        if name not in results["shallow"]:
            print(f"[{now()}] {name}: shallow baselines", flush=True)
            results["shallow"][name] = run_shallow(split_normal(data, k, HOLDOUT, 0))
            save(path, results)
        for seed in args.seeds:
            key = f"{name}/{seed}"
            if key in results["deep"]:
                continue
            print(f"[{now()}] {key}: DCAE + Deep SVDD", flush=True)
            split = split_normal(data, k, HOLDOUT, seed)
            assert split.test_labels is not None
            eval_idx = evaluation_indices(split.test_labels)
            run = run_deep(net_cfg, split, schedule, seed, eval_idx)
            results["deep"][key] = {"class": k, "class_name": name, **run}
            save(path, results)
            aucs_pct = ", ".join(f"{m} {100 * v:.1f}" for m, v in run["auc"].items())
            print(f"    {aucs_pct}; {run['seconds']['total']:.0f} s", flush=True)
        write_report(args.out, results, data.class_names)
    write_report(args.out, results, data.class_names)
    print(f"wrote {path}, {args.out / 'table1.md'}, {args.out / 'table1.png'}")
