"""Beyond the paper on Fashion-MNIST: one-class Deep SVDD beside its self-supervised variants
(`deepsvdd train --pretrain-task rotation`, `--transforms rotations`), each class in turn the
normal class, the whole test split, bench/table1.py's protocol (training images less the
seeded 10% calibration hold-out); results kept in bench/beyond/beyond.json as they come.

Every variant runs the loops `deepsvdd train` runs (training.pipeline.fit's steps), on one
shortened schedule stated in the report. Where two variants share a pretraining (same task,
class and seed) it is trained once: the encoder it hands on is the same either way.

Run from the repository root: `.venv/bin/python bench/beyond.py --help`; `--speed` measures
each variant's exported graph in raw ONNX Runtime instead.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import fcntl
import json
import os
import shlex
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from bench.table1 import HOLDOUT, cpu_model, now, write_atomic
from training import preprocess
from training.batches import Uint8Images
from training.calibration import auc_or_none
from training.config import TRANSFORM_SETS, TrainConfig
from training.data import load_dataset, resolve_class
from training.deepsvdd import score, train_deepsvdd
from training.networks import Encoder, make_config
from training.pipeline import seed_everything, split_normal
from training.pretext import pretext_transforms, pretrainer
from training.transforms import with_transforms

OUT = Path(__file__).resolve().parent / "beyond"
SCORES = Path(__file__).resolve().parent / "out" / "beyond-scores"
TABLE1_FULL = Path(__file__).resolve().parent / "table1-full" / "table1.json"


@dataclass(frozen=True)
class Variant:
    """A `deepsvdd train` configuration: its flags and what they set in TrainConfig."""

    name: str
    flags: str
    pretrain: bool
    pretrain_task: str
    transforms: str
    # An ensemble: the variants its members are, in `deepsvdd train`'s order; the i-th
    # member of a kind has seed + i (training/ensemble.py's rule).
    ensemble: tuple[str, ...] = ()

    @property
    def members(self) -> int:
        return max(1, len(self.ensemble))

    def config(self, base: TrainConfig) -> TrainConfig:
        return replace(
            base,
            pretrain=self.pretrain,
            pretrain_task=self.pretrain_task,  # type: ignore[arg-type]
            transforms=self.transforms,
        )


VARIANTS = {
    v.name: v
    for v in (
        Variant("deep-svdd", "(the paper: DCAE, one centre)", True, "dcae", "identity"),
        Variant("rotation-pretrain", "--pretrain-task rotation", True, "rotation", "identity"),
        Variant(
            "transform-centres", "--no-pretrain --transforms rotations", False, "dcae", "rotations"
        ),
        Variant(
            "rotation+centres",
            "--pretrain-task rotation --transforms rotations",
            True,
            "rotation",
            "rotations",
        ),
        Variant(
            "rotation-flips+centres",
            "--pretrain-task rotation --transforms rotations-flips",
            True,
            "rotation",
            "rotations-flips",
        ),
        Variant(
            "rotation+centres x3",
            "--pretrain-task rotation --transforms rotations --ensemble 3",
            True,
            "rotation",
            "rotations",
            ensemble=("rotation+centres",) * 3,
        ),
        Variant(
            "deep-svdd & rotation+centres",
            "--members dcae:identity,rotation:rotations",
            True,
            "rotation",
            "rotations",
            ensemble=("deep-svdd", "rotation+centres"),
        ),
    )
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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


def load(path: Path, sched: dict[str, Any], resume: bool) -> dict[str, Any]:
    fresh = {"schedule": sched, "commands": [], "runs": {}}
    if not path.exists():
        return fresh
    if not resume:
        raise SystemExit(f"{path} exists; pass --resume to continue it, or move it away")
    results: dict[str, Any] = json.loads(path.read_text())
    if results["schedule"] != sched:
        raise SystemExit(f"{path} was written with schedule {results['schedule']}")
    return results


def save(path: Path, results: dict[str, Any], class_names: list[str]) -> None:
    """Merges with the file under a lock (two processes may fill it), recomputes `means`."""
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            disk = json.loads(path.read_text())
            results["runs"] = {**disk["runs"], **results["runs"]}
            results["commands"] = list(dict.fromkeys([*disk["commands"], *results["commands"]]))
            results.setdefault("speed", disk.get("speed"))
        results.update(summary(results, class_names))
        write_atomic(path, (json.dumps(results, indent=1) + "\n").encode())


def per_class(
    results: dict[str, Any], variant: str, class_names: list[str]
) -> dict[str, list[float]]:
    """class name -> the variant's AUCs (%) over the seeds done."""
    found: dict[str, list[float]] = {}
    for key, run in sorted(results["runs"].items()):
        name, k_name, _ = key.split("/")
        if name == variant:
            found.setdefault(k_name, []).append(100 * run["auc"])
    return {c: found[c] for c in class_names if c in found}


def summary(results: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """`means`: each variant's mean over classes of its mean over seeds, in %, for the
    variants done on every class with the same seeds; `partial` the others."""
    means, partial = {}, {}
    for variant in VARIANTS:
        rows = per_class(results, variant, class_names)
        if not rows:
            continue
        value = round(float(np.mean([np.mean(v) for v in rows.values()])), 2)
        seeds = {len(v) for v in rows.values()}
        if len(rows) == len(class_names) and len(seeds) == 1:
            means[variant] = value
        else:
            partial[variant] = {
                "mean": value,
                "classes": len(rows),
                "runs": sum(map(len, rows.values())),
            }
    return {"means": means, "partial": partial}


# --- Report ----------------------------------------------------------------------------------


def table1_full(class_names: list[str]) -> dict[str, float] | None:
    """OC-Deep SVDD on the paper's schedule, per class (bench/table1-full), if it is there."""
    if not TABLE1_FULL.exists():
        return None
    deep = json.loads(TABLE1_FULL.read_text())["deep"]
    found: dict[str, list[float]] = {}
    for run in deep.values():
        found.setdefault(run["class_name"], []).append(100 * run["auc"]["one-class"])
    return {c: float(np.mean(v)) for c, v in found.items() if c in class_names}


def seeds_of(results: dict[str, Any], variant: str) -> list[int]:
    return sorted(
        {int(key.split("/")[2]) for key in results["runs"] if key.split("/")[0] == variant}
    )


def write_report(out: Path, results: dict[str, Any], class_names: list[str]) -> None:
    s = results["schedule"]
    variants = [v for v in VARIANTS if per_class(results, v, class_names)]
    full = table1_full(class_names)
    heads = [*variants, *(["deep-svdd, paper schedule"] if full else [])]
    lines = [
        "# Beyond the paper: self-supervised Deep SVDD on Fashion-MNIST, AUC (%)",
        "",
        "Each class in turn is the normal class; trained on its training images less the seeded "
        "10% calibration hold-out, no pretrained weights; test: the whole test split (1,000 "
        "normal, 9,000 anomalous). Mean ± std over the seeds done; the best of each row in bold.",
        "",
        "| normal class | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]
    tables = {v: per_class(results, v, class_names) for v in variants}
    for k, name in enumerate(class_names):
        cells = []
        best = max((np.mean(tables[v][name]) for v in variants if name in tables[v]), default=None)
        for v in variants:
            a = tables[v].get(name)
            if a is None:
                cells.append("–")
                continue
            text = f"{np.mean(a):.1f} ± {np.std(a):.1f}" if len(a) > 1 else f"{a[0]:.1f}"
            cells.append(f"**{text}**" if np.mean(a) == best else text)
        if full:
            cells.append(f"{full[name]:.1f}" if name in full else "–")
        lines.append(f"| {k} {name} | " + " | ".join(cells) + " |")
    mean_cells = []
    top = max(results["means"].values(), default=None)
    for v in variants:
        if v in results["means"]:
            value = results["means"][v]
            mean_cells.append(f"**{value:.1f}**" if value == top else f"{value:.1f}")
        else:
            p = results["partial"][v]
            mean_cells.append(
                f"{p['mean']:.1f} (partial: {p['runs']} runs, {p['classes']} classes)"
            )
    if full:
        mean_cells.append(f"{np.mean(list(full.values())):.1f}")
    lines.append("| **mean** | " + " | ".join(mean_cells) + " |")
    lines += [
        "",
        "Seeds per variant: " + "; ".join(f"{v} {seeds_of(results, v)}" for v in variants) + ".",
        "",
    ]
    lines += [
        "## The variants",
        "",
        "| variant | `deepsvdd train` flags | centres | forward passes per image |",
        "|---|---|---|---|",
    ]
    for v in variants:
        kinds = [VARIANTS[b].transforms for b in VARIANTS[v].ensemble] or [VARIANTS[v].transforms]
        n = sum(len(TRANSFORM_SETS[t]) for t in kinds)
        lines.append(f"| {v} | `{VARIANTS[v].flags}` | {n} | {n} |")
    speed = results.get("speed")
    if speed:
        lines += [
            "",
            "## What each costs to serve: the exported graph in raw ONNX Runtime",
            "",
            f"Batch {speed['batch']}, {speed['note']}",
            "",
            "| variant | images/s, 1 thread | images/s, all threads | relative to deep-svdd |",
            "|---|---:|---:|---:|",
        ]
        plain = speed["variants"]["deep-svdd"]["all_threads"]
        for v, r in speed["variants"].items():
            lines.append(
                f"| {v} | {r['one_thread']:,.0f} | {r['all_threads']:,.0f} | "
                f"{r['all_threads'] / plain:.2f} |"
            )
    lines += [
        "",
        "## How these were made",
        "",
        f"- Schedule, the same for every variant: pretraining {s['pretrain_epochs']} epochs "
        f"(lr x0.1 after {s['pretrain_milestone']}; DCAE lr {s['dcae_lr']:g}, rotation "
        f"prediction lr {s['rotation_lr']:g}), Deep SVDD {s['epochs']} epochs (lr {s['lr']:g}, "
        f"x0.1 after {s['milestone']}), batch {s['batch_size']}, weight decay "
        f"{s['weight_decay']:g}. The paper's schedule (350 + 250 epochs) is in the last column, "
        "from bench/table1-full (seeds 0, 1, 2).",
        "- One-class objective throughout; the collapse guards (no bias, no affine BatchNorm, "
        "eps-pushed centres) hold for every variant: the rotation head is dropped before Deep "
        "SVDD and never exported.",
        f"- Machine: {results.get('machine', '?')}.",
        "- Commands:",
        "",
        *[f"      {c}" for c in results["commands"]],
        "",
    ]
    write_atomic(out / "beyond.md", "\n".join(lines).encode())


# --- Serving cost ----------------------------------------------------------------------------


def measure_speed(results: dict[str, Any], batch: int = 64, seconds: float = 3.0) -> dict[str, Any]:
    """Images/s of each variant's exported graph (untrained weights: the cost is the same)."""
    import onnxruntime as ort

    from modelfile import INPUT_NAME, SCORE_OUTPUT
    from training.ensemble import Ensemble
    from training.export import ScoringModel, to_onnx_bytes
    from training.transforms import out_dim

    load = os.getloadavg()[0]
    net_cfg = make_config("mnist", 1, 28, 28)
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    found: dict[str, Any] = {}
    for v in VARIANTS.values():
        torch.manual_seed(0)
        kinds = [VARIANTS[b].transforms for b in v.ensemble] or [v.transforms]
        members = [with_transforms(Encoder(net_cfg), t) for t in kinds]
        net = members[0] if len(members) == 1 else Ensemble(members, [1.0] * len(members))
        net.eval()
        model = ScoringModel(preprocess.Preprocess(-1.0, 5.0), net, torch.ones(out_dim(net)))
        graph = to_onnx_bytes(model, torch.from_numpy(x[:2]))
        row = {}
        for label, threads in (("one_thread", 1), ("all_threads", 0)):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
            for _ in range(5):
                session.run([SCORE_OUTPUT], {INPUT_NAME: x})
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                session.run([SCORE_OUTPUT], {INPUT_NAME: x})
                n += 1
            row[label] = n * batch / (time.perf_counter() - t0)
        found[v.name] = row
        print(
            f"    {v.name}: {row['one_thread']:,.0f} / {row['all_threads']:,.0f} images/s",
            flush=True,
        )
    note = (
        f"{seconds:g} s per measurement, {os.cpu_count()} CPUs ({cpu_model()}), load average "
        f"{load:.2f} before."
    )
    return {"batch": batch, "note": note, "variants": found}


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist", args.data_dir)
    names = list(data.class_names)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "beyond.json"
    results = load(path, schedule(args), args.resume or args.speed or args.report)
    if args.report:
        write_report(args.out, results, names)
        return
    if args.speed:
        results["speed"] = measure_speed(results)
        save(path, results, names)
        write_report(args.out, results, names)
        return
    results["commands"].append(shlex.join([".venv/bin/python", "bench/beyond.py", *argv]))
    results["machine"] = f"{os.cpu_count()} CPUs ({cpu_model()}), {args.threads} torch thread(s)"
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


if __name__ == "__main__":
    main(sys.argv[1:])
