"""The AnoGAN column of Table 1 on Fashion-MNIST: AnoGAN beside one-class Deep SVDD, the DCAE and
the shallow baselines, all scored on one seeded stratified subset of the test set (AnoGAN's latent
search per test image is what limits it); results kept in table1-anogan.json as they come.

Run from the repository root: `.venv/bin/python -m bench.table1_anogan --help`.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness.progress import now
from bench.harness.results import load_results, write_json, write_text
from bench.table1.runs import aucs, evaluation_indices, run_deep, run_shallow
from bench.table1.schedule import DATASET, HOLDOUT, Schedule
from bench.table1_anogan.anogan import AnoGANConfig, anomaly_score, train_anogan
from training import preprocess
from training.config import ONE_CLASS
from training.data import load_dataset, resolve_class
from training.networks import make_config
from training.run import Split, split_normal

OUT = Path(__file__).resolve().parent
PAPER_MNIST_ANOGAN = 91.3  # the paper's Table 1, AnoGAN mean over the ten MNIST classes
COLUMNS = (
    ("anogan", "AnoGAN"),
    (ONE_CLASS, "OC-Deep SVDD"),
    ("dcae", "DCAE"),
    ("ocsvm", "OC-SVM"),
    ("kde", "KDE"),
    ("iforest", "IF"),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.table1_anogan", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--per-class", type=int, default=100, help="test images per class (100)")
    p.add_argument("--seed", type=int, default=0, help="training seed (one)")
    p.add_argument("--classes", nargs="+", default=None, help="normal classes (default all)")
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--anogan-epochs", type=int, default=10)
    p.add_argument("--anogan-steps", type=int, default=500)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=OUT, help="output folder (bench/table1_anogan)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def stratified_subset(labels: np.ndarray, per_class: int) -> np.ndarray:
    """The same seeded `per_class` test images of every class, whichever class is normal."""
    rng = np.random.default_rng(0)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def run_class(split: Split, schedule: Schedule, gan: AnoGANConfig, seed: int) -> dict[str, Any]:
    assert split.test is not None and split.test_labels is not None
    eval_idx = evaluation_indices(split.test_labels)
    record: dict[str, Any] = {"shallow": run_shallow(split)}
    record["deep"] = run_deep(make_config("mnist", 1, 28, 28), split, schedule, seed, eval_idx)
    t0 = time.perf_counter()
    pre = preprocess.fit_preprocess(split.train)
    model = train_anogan(preprocess.apply(pre, split.train), gan)
    scores = anomaly_score(model, preprocess.apply(pre, split.test))
    full, part = aucs(split.test_labels, scores, eval_idx)
    record["anogan"] = {
        "auc": full,
        "auc_eval": part,
        "final_d_loss": model.history["d"][-1] if model.history["d"] else None,
        "final_g_loss": model.history["g"][-1] if model.history["g"] else None,
        "seconds": time.perf_counter() - t0,
    }
    return record


def row_values(record: dict[str, Any]) -> dict[str, float]:
    """AUCs in % on the subset's 90% outside the OC-SVM hold-out, where all methods are scored."""
    return {
        "anogan": 100 * record["anogan"]["auc_eval"],
        ONE_CLASS: 100 * record["deep"]["auc_eval"][ONE_CLASS],
        "dcae": 100 * record["deep"]["auc_eval"]["dcae"],
        **{m: 100 * record["shallow"][m] for m in ("ocsvm", "kde", "iforest")},
    }


def write_report(out: Path, results: dict[str, Any], names: list[str]) -> None:
    s = results["schedule"]
    heads = [h for _, h in COLUMNS]
    lines = [
        "# Table 1 on Fashion-MNIST with AnoGAN, on a stratified test subset: AUC (%)",
        "",
        f"Test set: the same seeded stratified subset of {s['per_class']} test images per class "
        f"({10 * s['per_class']} in all) for every normal class and every method; all columns "
        "are scored on its 90% outside the 10% labelled hold-out that picks the OC-SVM's gamma "
        f"and nu. One seed ({s['seed']}). These figures are NOT those of `table1-full/` (whole "
        "test set, the paper's schedule): the deep schedule here is short (below).",
        "",
        "| normal class | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]
    done = sorted(map(int, results["runs"]))
    for k in done:
        v = row_values(results["runs"][str(k)])
        top = max(v.values())
        cells = [f"**{v[m]:.1f}**" if v[m] == top else f"{v[m]:.1f}" for m, _ in COLUMNS]
        lines.append(f"| {k} {names[k]} | " + " | ".join(cells) + " |")
    if done:
        means = {
            m: np.mean([row_values(results["runs"][str(k)])[m] for k in done]) for m, _ in COLUMNS
        }
        lines.append(
            f"| **mean ({len(done)} classes)** | "
            + " | ".join(f"{means[m]:.1f}" for m, _ in COLUMNS)
            + " |"
        )
    gan = s["anogan"]
    seconds = sum(r["anogan"]["seconds"] for r in results["runs"].values())
    lines += [
        "",
        f"The paper's AnoGAN on MNIST: {PAPER_MNIST_ANOGAN} mean AUC (no Fashion-MNIST figure).",
        "",
        "## How these were made",
        "",
        f"- AnoGAN: DCGAN (latent {gan['latent_dim']}, width {gan['width']}) trained "
        f"{gan['epochs']} epochs (batch {gan['batch_size']}, Adam lr {gan['lr']:g}, beta1 0.5) on "
        "the GCN-L1 + min-max normal training images; score: the loss after "
        f"{gan['search_steps']} Adam steps (lr {gan['search_lr']:g}) on z of "
        f"(1 - {gan['lam']:g}) ||x - G(z)||_1 + {gan['lam']:g} ||f(x) - f(G(z))||_1, f the "
        f"discriminator's last conv block. {seconds / 60:.1f} min in all.",
        f"- DCAE {s['deep']['pretrain_epochs']} epochs, one-class Deep SVDD "
        f"{s['deep']['epochs']} epochs (bench/table1's loops; the paper: 350 and 250).",
        "- Training data as bench/table1's: the normal class's training images less a seeded "
        "10% hold-out. Shared 2-core machine, 1 torch thread; timings noisy.",
        "- Command(s):",
        "",
        *[f"      {c}" for c in results["commands"]],
        "",
    ]
    write_text(out / "table1-anogan.md", "\n".join(lines))


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset(DATASET, args.data_dir)
    assert data.x_test is not None and data.y_test is not None
    subset = stratified_subset(data.y_test, args.per_class)
    wanted = args.classes if args.classes is not None else range(len(data.class_names))
    classes = [resolve_class(data, c) for c in wanted]
    schedule = Schedule(args.pretrain_epochs, args.epochs, soft_boundary=False)
    gan = AnoGANConfig(epochs=args.anogan_epochs, search_steps=args.anogan_steps, seed=args.seed)
    header = {
        "per_class": args.per_class,
        "seed": args.seed,
        "deep": schedule.to_dict(),
        "anogan": gan.to_dict(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "table1-anogan.json"
    fresh = {"schedule": header, "commands": [], "runs": {}}
    results = load_results(path, fresh, args.resume)
    results["commands"].append(shlex.join([".venv/bin/python", "-m", "bench.table1_anogan", *argv]))
    for k in classes:
        if str(k) in results["runs"]:
            continue
        print(f"[{now()}] {data.class_names[k]}", flush=True)
        split = split_normal(data, k, HOLDOUT, args.seed)
        assert split.test is not None and split.test_labels is not None
        split = Split(split.train, split.holdout, split.test[subset], split.test_labels[subset])
        results["runs"][str(k)] = run_class(split, schedule, gan, args.seed)
        write_json(path, results)
        print(
            "    " + str({m: round(v, 1) for m, v in row_values(results["runs"][str(k)]).items()})
        )
    write_json(path, results)
    write_report(args.out, results, data.class_names)
    print(f"wrote {path} and {args.out / 'table1-anogan.md'}")
