"""The report of bench/beyond: the AUC table per class and variant, the variants, what each
costs to serve, and how the figures were made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.beyond.variants import VARIANTS
from bench.harness.results import write_text
from training.config import ONE_CLASS, TRANSFORM_SETS

TABLE1_FULL = Path(__file__).resolve().parents[1] / "table1" / "full" / "table1.json"


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


def table1_full(class_names: list[str]) -> dict[str, float] | None:
    """OC-Deep SVDD on the paper's schedule, per class (bench/table1/full), if it is there."""
    if not TABLE1_FULL.exists():
        return None
    deep = json.loads(TABLE1_FULL.read_text())["deep"]
    found: dict[str, list[float]] = {}
    for run in deep.values():
        found.setdefault(run["class_name"], []).append(100 * run["auc"][ONE_CLASS])
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
        "from bench/table1/full (seeds 0, 1, 2).",
        "- One-class objective throughout; the collapse guards (no bias, no affine BatchNorm, "
        "eps-pushed centres) hold for every variant: the rotation head is dropped before Deep "
        "SVDD and never exported.",
        f"- Machine: {results.get('machine', '?')}.",
        "- Commands:",
        "",
        *[f"      {c}" for c in results["commands"]],
        "",
    ]
    write_text(out / "beyond.md", "\n".join(lines))
