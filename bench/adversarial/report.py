"""The report of bench/adversarial: Table 2 per attack (markdown) and Figure 4 (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.harness.results import save_figure, write_text
from bench.table1.schedule import SOFT_NUS
from training.config import ONE_CLASS, SOFT_BOUNDARY
from training.data import ImageSet

ATTACK_NAMES = {
    "boundary": "Boundary Attack",
    "fgsm": "FGSM (L-inf)",
    "pgd": "PGD (L-inf)",
}
FIGURE_TOP = 32
# Table 2's rows: (key, heading); SOFT_BOUNDARY is the better nu per (class, attack).
METHODS = (
    ("ocsvm", "OC-SVM/SVDD"),
    ("kde", "KDE"),
    ("iforest", "IF"),
    ("dcae", "DCAE"),
    ("anogan", "AnoGAN"),
    (SOFT_BOUNDARY, "Soft-bound. Deep SVDD"),
    (ONE_CLASS, "One-class Deep SVDD"),
)
PAPER_TABLE2 = {
    "ocsvm": "67.5 ± 1.2",
    "kde": "60.5 ± 1.7",
    "iforest": "73.8 ± 0.9",
    "dcae": "79.1 ± 3.0",
    "anogan": "– (did not converge)",
    SOFT_BOUNDARY: "77.8 ± 4.9",
    ONE_CLASS: "80.3 ± 2.8",
}


def method_values(runs: list[dict[str, Any]], attack: str) -> dict[str, np.ndarray]:
    """Per method, the AUCs in % over the runs' seeds; soft-boundary is the better nu."""
    values = {
        m: 100 * np.array([r["auc"][attack][m] for r in runs], dtype=float)
        for m in runs[0]["auc"][attack]
    }
    best = max(SOFT_NUS, key=lambda nu: values[f"{SOFT_BOUNDARY}-nu{nu:g}"].mean())
    values[SOFT_BOUNDARY] = values[f"{SOFT_BOUNDARY}-nu{best:g}"]
    values["best_nu"] = np.array([best])
    return values


def cell(v: np.ndarray) -> str:
    return f"{v.mean():.1f} ± {v.std():.1f}"


def table2(results: dict[str, Any], attack: str, classes: list[str]) -> list[str]:
    per_class = {
        c: method_values([r for r in results["runs"].values() if r["class_name"] == c], attack)
        for c in classes
    }
    gtsrb = results["schedule"]["dataset"] == "gtsrb"
    seeds = {c: sum(r["class_name"] == c for r in results["runs"].values()) for c in classes}
    heads = [f"normal {c} ({seeds[c]} seeds)" for c in classes]
    extra = ["mean over classes"] if len(classes) > 1 else []
    paper = ["paper (GTSRB, Boundary Attack)"] if gtsrb or attack == "boundary" else []
    lines = [
        "| method | " + " | ".join(heads + extra + paper) + " |",
        "|---" * (1 + len(heads) + len(extra) + len(paper)) + "|",
    ]
    for key, head in METHODS:
        cells = [cell(per_class[c][key]) for c in classes]
        if extra:
            cells.append(f"{np.mean([per_class[c][key].mean() for c in classes]):.1f}")
        if paper:
            cells.append(PAPER_TABLE2[key])
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    nus = ", ".join(f"{c} {per_class[c]['best_nu'][0]:g}" for c in classes)
    lines += ["", f"Soft-boundary: the better nu of {SOFT_NUS} per class ({nus}), as the paper."]
    return lines


def attacks_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| normal class | attack | attacked | success rate | median L2 (all successes) | "
        "median L2 (kept) | max L-inf (kept) | kept | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c, sets in results["sets"].items():
        for a, s in sets.items():
            rate = "–" if s["success_rate"] is None else f"{100 * s['success_rate']:.0f}%"
            l2 = "–" if s["median_l2"] is None else f"{s['median_l2']:.2f}"
            kept = "–" if s["median_l2_kept"] is None else f"{s['median_l2_kept']:.2f}"
            linf = "–" if s["max_linf"] is None else f"{s['max_linf']:.3f}"
            lines.append(
                f"| {c} | {ATTACK_NAMES[a]} | {s['n_attacked']} of {s['n_input']} | {rate} | "
                f"{l2} | {kept} | {linf} | {s['n_kept']} | {s['seconds']:.0f} |"
            )
    return lines


def write_report(out: Path, results: dict[str, Any], data: ImageSet) -> None:
    s = results["schedule"]
    dataset = s["dataset"]
    classes = sorted({r["class_name"] for r in results["runs"].values()})
    seeds = sorted({r["seed"] for r in results["runs"].values()})
    total = sum(r["seconds"]["total"] for r in results["runs"].values())
    gan = s["anogan"]
    lines = [
        f"# Section 4.3 on {dataset}: detecting adversarial examples, AUC (%)",
        "",
        "Trained on the clean normal class's training images only; tested on its normal test "
        f"images ({s['n_normal'] or 'all'} drawn, seed 0) + {s['n_adversarial']} adversarial "
        "examples per attack made from a seeded draw of those test images against a classifier "
        f"trained on all {len(data.class_names)} classes (test accuracy "
        f"{100 * results['classifier_test_accuracy']:.1f}%). Mean ± std over seeds "
        f"{', '.join(map(str, seeds))}; every method scored on the same test images: the 90% "
        "outside the 10% labelled hold-out (seeded per seed) that picks the OC-SVM's nu and "
        "gamma, as in the paper.",
        "",
        "## Attacks",
        "",
        *attacks_table(results),
        "",
        "Success rate: share of the attacked images (those the classifier got right) that the "
        "classifier then misclassifies; L2 in [0, 1]-pixel units. Kept: the first successful "
        "ones in draw order, the test set's adversarial part.",
        "",
    ]
    for a in s["attacks"]:
        lines += [f"## Table 2: {ATTACK_NAMES[a]}", "", *table2(results, a, classes), ""]
    lines += [
        "## How these were made",
        "",
        f"- Schedule (shortened unless stated): DCAE {s['pretrain_epochs']} epochs, Deep SVDD "
        f"{s['epochs']} epochs (lr {s['lr']:g}, x0.1 at 250/350 and 60%), batch "
        f"{s['batch_size']}, weight decay {s['weight_decay']:g}; the paper: 250 + 100 and "
        "150 + 100 epochs.",
        f"- AnoGAN: DCGAN, latent {gan['latent_dim']}, width {gan['width']}, {gan['epochs']} "
        f"epochs, batch {gan['batch_size']}; latent search {gan['search_steps']} Adam steps "
        f"(lr {gan['search_lr']:g}), lambda {gan['lam']:g}.",
        f"- Attacks (foolbox 3): {s['attack']}; classifier {s['classifier_epochs']} epochs.",
        "- Shallow baselines: `training.baselines` settings (PCA 95%, KDE bandwidth by 5-fold "
        "CV, IF 100 trees, 256 samples), fitted once per seed on the flattened preprocessed "
        "images.",
        f"- Compute: {total / 60:.1f} min for {len(results['runs'])} (class, seed) runs on "
        f"{results['machine']}, shared with other jobs (timings noisy).",
        "- Command(s):",
        "",
        *[f"      {c}" for c in results["commands"]],
        "",
        f"Raw figures: `{dataset}.json`; adversarial sets: `{dataset}-<class>-sets.npz`; "
        f"Figure 4: `figure4-{dataset}-<class>.png`.",
        "",
    ]
    write_text(out / f"{dataset}.md", "\n".join(lines))
    for c in classes:
        figure4(out / f"figure4-{dataset}-{c}.png", out, results, data, c)


def figure4(path: Path, out: Path, results: dict[str, Any], data: ImageSet, name: str) -> None:
    """Per attack, the most anomalous test images by one-class Deep SVDD (normal class `name`,
    its lowest seed), adversarial ones framed in green, as the paper's Figure 4."""
    assert data.x_test is not None
    s = results["schedule"]
    runs = [r for r in results["runs"].values() if r["class_name"] == name]
    run = min(runs, key=lambda r: r["seed"])
    with np.load(out / f"{s['dataset']}-{run['class_name']}-sets.npz") as f:
        sets = {k: f[k] for k in f.files}
    normal = data.x_test[sets["normal"]].astype(np.float32) / 255
    scores = np.array(run["one_class_scores"])
    attacks = s["attacks"]
    height = 0.6 + 2.2 * len(attacks)
    fig = Figure(figsize=(16, height), dpi=100)
    FigureCanvasAgg(fig)
    start = len(normal)
    for row, a in enumerate(attacks):
        adv = sets[a].transpose(0, 2, 3, 1)
        images = np.concatenate([normal, adv])
        part = np.r_[scores[: len(normal)], scores[start : start + len(adv)]]
        start += len(adv)
        order = np.argsort(-part)[:FIGURE_TOP]
        for j, i in enumerate(order):
            ax = fig.add_subplot(len(attacks) * 2, FIGURE_TOP // 2, row * FIGURE_TOP + j + 1)
            img = images[i].squeeze()
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            is_adv = i >= len(normal)
            for spine in ax.spines.values():
                spine.set_edgecolor("limegreen" if is_adv else "lightgrey")
                spine.set_linewidth(4 if is_adv else 0.5)
            if j == 0:
                n_adv = int((order >= len(normal)).sum())
                ax.set_title(
                    f"{ATTACK_NAMES[a]}: {n_adv} of the {FIGURE_TOP} most anomalous are "
                    "adversarial (green)",
                    loc="left",
                    fontsize=10,
                )
    fig.suptitle(
        f"{s['dataset']}, normal class {run['class_name']}, seed {run['seed']}: most anomalous "
        "test images by one-class Deep SVDD, most anomalous first"
    )
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - 0.6 / height, wspace=0.05, hspace=0.35
    )
    save_figure(fig, path)
