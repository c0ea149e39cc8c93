"""Beyond the paper on Fashion-MNIST: one-class Deep SVDD beside its self-supervised variants
(`deepsvdd train --pretrain-task rotation`, `--transforms rotations`), each class in turn the
normal class, the whole test split, bench/table1's protocol (training images less the
seeded 10% calibration hold-out); results kept in bench/beyond/beyond.json as they come.

Every variant runs the loops `deepsvdd train` runs (training.pipeline.fit's steps), on one
shortened schedule stated in the report. Where two variants share a pretraining (same task,
class and seed) it is trained once: the encoder it hands on is the same either way.

Run from the repository root: `.venv/bin/python -m bench.beyond --help`; `--speed` measures
each variant's exported graph in raw ONNX Runtime instead.
"""

from __future__ import annotations

import argparse
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.beyond.report import summary, write_report
from bench.beyond.speed import measure_speed
from bench.beyond.variants import VARIANTS, Variant
from bench.harness.machine import cpu_line
from bench.harness.progress import now
from bench.harness.results import load_results, locked, merge_disk, write_json
from bench.table1.schedule import HOLDOUT
from training import preprocess
from training.batches import Uint8Images
from training.calibration import auc_or_none
from training.config import TrainConfig
from training.data import load_dataset, resolve_class
from training.deepsvdd import score, train_deepsvdd
from training.networks import Encoder, make_config
from training.pipeline import seed_everything
from training.pretext import pretext_transforms, pretrainer
from training.run import split_normal
from training.transforms import with_transforms

OUT = Path(__file__).resolve().parent
SCORES = Path(__file__).resolve().parents[1] / "out" / "beyond-scores"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.beyond", description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--classes", nargs="+", default=None, help="names or indices (default all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--resume", action="store_true", help="continue beyond.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speed", action="store_true", help="time each variant's graph in ORT")
    p.add_argument("--report", action="store_true", help="only rewrite the report from the JSON")
    p.add_argument(
        "--scores-dir",
        type=Path,
        default=SCORES,
        help="each run's hold-out and test scores, for ensembles (default bench/out/)",
    )
    return p.parse_args(argv)


def base_config(args: argparse.Namespace, seed: int) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, pretrain_epochs=args.pretrain_epochs, seed=seed)


def schedule(args: argparse.Namespace) -> dict[str, Any]:
    cfg = base_config(args, 0)
    return {
        "pretrain_epochs": cfg.pretrain_epochs,
        "pretrain_milestone": cfg.pretrain_milestone,
        "dcae_lr": cfg.lr,
        "rotation_lr": replace(cfg, pretrain_task="rotation").pretrain_step,
        "epochs": cfg.epochs,
        "milestone": cfg.milestone,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "weight_decay": cfg.weight_decay,
        "holdout": HOLDOUT,
    }


# --- One (class, seed) -----------------------------------------------------------------------


def run_pair(
    data: Any, k: int, seed: int, variants: list[Variant], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Each variant on one (class, seed): test AUC over the whole test split, and timings.

    An ensemble variant is `deepsvdd train --ensemble K` or `--members`: its members on this
    seed's split (the i-th of a kind with seed + i), the score the sum of each member's test
    scores over its hold-out median (training/ensemble.py's arithmetic, which its tests check
    against the exported graph). A member that is also a variant of this table reuses that
    run's saved scores.
    """
    split = split_normal(data, k, HOLDOUT, seed)
    assert split.test is not None and split.test_labels is not None
    pre = preprocess.preprocess_from_range(*preprocess.gcn_range(split.train))
    images = {
        "train": Uint8Images(split.train, pre, "cpu"),
        "test": Uint8Images(split.test, pre, "cpu"),
        "holdout": Uint8Images(split.holdout, pre, "cpu"),
    }
    pretrained: dict[str, tuple[dict[str, torch.Tensor], float]] = {}
    out = {}
    for v in variants:
        if v.members == 1:
            out[v.name] = train_one(v, seed, k, seed, images, split.test_labels, pretrained, args)
            continue
        t0 = time.perf_counter()
        test, medians = np.zeros(len(split.test)), []
        for i, base in enumerate(v.ensemble):
            member_seed = seed + v.ensemble[:i].count(base)
            found = args.scores_dir / f"{member_name(base, seed, member_seed)}-{k}-{seed}.npz"
            if not found.exists():
                train_one(
                    VARIANTS[base],
                    member_seed,
                    k,
                    seed,
                    images,
                    split.test_labels,
                    pretrained,
                    args,
                )
            saved = np.load(found)
            medians.append(float(np.median(saved["holdout"])))
            test += saved["test"] / medians[-1]
        out[v.name] = {
            "auc": auc_or_none(split.test_labels, test),
            "holdout_medians": medians,
            "seconds": time.perf_counter() - t0,
        }
    return out


def member_name(variant: str, split_seed: int, seed: int) -> str:
    return variant if seed == split_seed else f"{variant}@seed{seed}"


def train_one(
    v: Variant,
    seed: int,
    k: int,
    split_seed: int,
    images: dict[str, Uint8Images],
    labels: np.ndarray,
    pretrained: dict[str, tuple[dict[str, torch.Tensor], float]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """pipeline.fit's steps for one variant and seed; its scores saved for the ensembles."""
    cfg = v.config(base_config(args, seed))
    net_cfg = make_config("mnist", 1, 28, 28)
    train = images["train"]
    t0 = time.perf_counter()
    seed_everything(cfg.seed)  # as pipeline.fit: the encoder first, then pretraining
    net = Encoder(net_cfg)
    pre_seconds = 0.0
    if cfg.pretrain:
        pretext = pretext_transforms(cfg) if v.pretrain_task == "rotation" else ""
        key = f"{cfg.pretrain_task}/{pretext}/{seed}"
        if key not in pretrained:
            encoder, _, _ = pretrainer(cfg)(net_cfg, train, cfg)
            pretrained[key] = (encoder.state_dict(), time.perf_counter() - t0)
        state_dict, pre_seconds = pretrained[key]
        net.load_state_dict(state_dict)
    t1 = time.perf_counter()
    state = train_deepsvdd(with_transforms(net, cfg.transforms), train, cfg)
    scores = score(state.net, state.c, images["test"]).numpy()
    train_scores = score(state.net, state.c, train)
    holdout = score(state.net, state.c, images["holdout"]).numpy()
    args.scores_dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.scores_dir / f"{member_name(v.name, split_seed, seed)}-{k}-{split_seed}.npz",
        test=scores,
        holdout=holdout,
    )
    return {
        "auc": auc_or_none(labels, scores),
        "train_score_std": float(train_scores.std()),
        "final_loss": state.history["train"][-1] if state.history["train"] else None,
        "seconds": pre_seconds + time.perf_counter() - t1,
    }


# --- Results file ----------------------------------------------------------------------------


def save(path: Path, results: dict[str, Any], class_names: list[str]) -> None:
    """Merges with the file under a lock (two processes may fill it), recomputes `means`."""
    with locked(path):
        disk = merge_disk(path, results, ("runs",))
        if disk is not None:
            results.setdefault("speed", disk.get("speed"))
        results.update(summary(results, class_names))
        write_json(path, results)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist", args.data_dir)
    names = list(data.class_names)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "beyond.json"
    fresh = {"schedule": schedule(args), "commands": [], "runs": {}}
    results = load_results(path, fresh, args.resume or args.speed or args.report)
    if args.report:
        write_report(args.out, results, names)
        return
    if args.speed:
        results["speed"] = measure_speed(results)
        save(path, results, names)
        write_report(args.out, results, names)
        return
    results["commands"].append(shlex.join([".venv/bin/python", "-m", "bench.beyond", *argv]))
    results["machine"] = cpu_line(args.threads)
    wanted = args.classes if args.classes is not None else range(len(names))
    classes = [resolve_class(data, c) for c in wanted]
    for seed in args.seeds:
        for k in classes:
            todo = [
                VARIANTS[v]
                for v in args.variants
                if f"{v}/{names[k]}/{seed}" not in results["runs"]
            ]
            if not todo:
                continue
            print(
                f"[{now()}] {names[k]} seed {seed}: {', '.join(v.name for v in todo)}", flush=True
            )
            for name, run in run_pair(data, k, seed, todo, args).items():
                results["runs"][f"{name}/{names[k]}/{seed}"] = run
                print(f"    {name}: AUC {100 * run['auc']:.1f}, {run['seconds']:.0f} s", flush=True)
            save(path, results, names)
            write_report(args.out, results, names)
    save(path, results, names)
    write_report(args.out, results, names)
    print(f"wrote {path} and {args.out / 'beyond.md'}")
