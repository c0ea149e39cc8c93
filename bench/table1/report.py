"""Table 1's report: the markdown table (with AnoGAN's column where it was run), the
comparison with the literature and the paper, how the figures were made, and the bar chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.harness.results import save_figure, write_text
from bench.table1.schedule import (
    ANOGAN,
    COLUMNS,
    DATASET,
    DISPLAY,
    LITERATURE,
    NOTES_HEADING,
    PAPER_EPOCHS,
    PAPER_ONE_CLASS,
    SHALLOW,
    deep_keys,
    soft_key,
)
from training.config import ONE_CLASS, SOFT_BOUNDARY


def summarise(results: dict[str, Any], class_names: list[str]) -> list[dict[str, Any]]:
    """Per class: name, (mean, std) in percent per deep method, the best nu, shallow AUCs."""
    nus = results["schedule"]["soft_boundary_nus"]
    rows = []
    for k in results["classes"]:
        name = class_names[k]
        runs = [r for r in results["deep"].values() if r["class"] == k]
        row: dict[str, Any] = {"class": k, "name": name, "n_seeds": len(runs)}
        if runs:
            for key in deep_keys(results):
                values = 100 * np.array([r["auc"][key] for r in runs])
                row[key] = (float(values.mean()), float(values.std()))
            for key in deep_keys(results):
                evals = 100 * np.array([r["auc_eval"][key] for r in runs])
                row[f"{key}_eval"] = float(evals.mean())
            if nus:
                best = max(nus, key=lambda nu: row[soft_key(nu)][0])
                row[SOFT_BOUNDARY] = row[soft_key(best)]
                row[f"{SOFT_BOUNDARY}_eval"] = row[f"{soft_key(best)}_eval"]
                row["best_nu"] = best
        shallow = results["shallow"].get(name)
        for key in SHALLOW:
            if shallow is not None:
                row[key] = (100 * shallow[key], 0.0)
        rows.append(row)
    return rows


def cell(value: tuple[float, float] | None, spread: bool, bold: bool) -> str:
    if value is None:
        return "–"
    text = f"{value[0]:.1f} ± {value[1]:.1f}" if spread else f"{value[0]:.1f}"
    return f"**{text}**" if bold else text


def anogan_column(dataset: str) -> dict[int, float] | None:
    """AnoGAN's AUC (%) per class from table1_anogan.py, where it has been run (Fashion-MNIST)."""
    if dataset != DATASET or not ANOGAN.exists():
        return None
    runs = json.loads(ANOGAN.read_text())["runs"]
    return {int(k): 100 * r["anogan"]["auc_eval"] for k, r in runs.items()}


def markdown_table(
    rows: list[dict[str, Any]], n_seeds: int, anogan: dict[int, float] | None = None
) -> list[str]:
    """The table; `anogan` adds AnoGAN's column (another test set: marked, never bold)."""
    heads = [head for _, head in COLUMNS] + (["AnoGAN†"] if anogan else [])
    lines = ["| normal class | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    means: dict[str, list[float]] = {key: [] for key, _ in COLUMNS}
    for row in rows:
        present = {key: row[key] for key, _ in COLUMNS if key in row}
        top = max((v[0] for v in present.values()), default=None)
        cells = []
        for key, _ in COLUMNS:
            value = present.get(key)
            deep = key in (ONE_CLASS, SOFT_BOUNDARY, "dcae")
            cells.append(cell(value, deep, value is not None and value[0] == top))
            if value is not None:
                means[key].append(value[0])
        label = f"{row['class']} {row['name']}"
        if row["n_seeds"] != n_seeds:
            label += f" ({row['n_seeds']} of {n_seeds} seeds)"
        if "best_nu" in row:
            cells[1] += f" (nu {row['best_nu']:g})"
        if anogan:
            value = anogan.get(row["class"])
            cells.append("–" if value is None else f"{value:.1f}†")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    complete = {key: float(np.mean(v)) for key, v in means.items() if len(v) == len(rows)}
    top = max(complete.values(), default=None)
    mean_cells = [
        cell((complete[key], 0.0), False, complete[key] == top) if key in complete else "–"
        for key, _ in COLUMNS
    ]
    if anogan:
        done = [anogan[r["class"]] for r in rows if r["class"] in anogan]
        mean_cells.append(f"{np.mean(done):.1f}†" if len(done) == len(rows) else "–")
    lines.append("| **mean** | " + " | ".join(mean_cells) + " |")
    return lines


def anogan_note(anogan: dict[int, float] | None) -> list[str]:
    if not anogan:
        return []
    gan = json.loads(ANOGAN.read_text())["schedule"]
    return [
        "",
        f"† AnoGAN, from `bench/table1_anogan/table1-anogan.md` (`python -m bench.table1_anogan`): "
        "its latent search per "
        "test image does not fit the whole test set here, so it is scored on a seeded "
        f"stratified subset ({gan['per_class']} test images per class, the 90% outside the "
        f"OC-SVM hold-out), one seed ({gan['seed']}), DCGAN {gan['anogan']['epochs']} epochs, "
        f"{gan['anogan']['search_steps']} search steps: not the test set of the other columns. "
        "On that same subset, with the shortened schedule there, OC-Deep SVDD has "
        f"{subset_mean(ONE_CLASS):.1f} and KDE {subset_mean('kde'):.1f} mean AUC.",
    ]


def subset_mean(method: str) -> float:
    runs = json.loads(ANOGAN.read_text())["runs"].values()
    if method in SHALLOW:
        return float(np.mean([100 * r["shallow"][method] for r in runs]))
    return float(np.mean([100 * r["deep"]["auc_eval"][method] for r in runs]))


def both_nus_table(rows: list[dict[str, Any]], nus: list[float]) -> list[str]:
    if not nus:
        return ["Not run with this schedule (`--no-soft-boundary`)."]
    keys = [soft_key(nu) for nu in nus]
    lines = [
        "| normal class | " + " | ".join(f"SB nu = {nu:g}" for nu in nus) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for row in rows:
        if "best_nu" in row:
            cells = [cell(row[key], True, False) for key in keys]
            lines.append(f"| {row['class']} {row['name']} | " + " | ".join(cells) + " |")
    return lines


def eval_part_line(rows: list[dict[str, Any]]) -> str:
    done = [r for r in rows if ONE_CLASS in r]
    if not done:
        return ""
    parts = [
        f"{head} {np.mean([r[f'{key}_eval'] for r in done]):.1f}"
        for key, head in COLUMNS[:3]
        if f"{key}_eval" in done[0]
    ]
    return (
        "run_baselines scores the shallow methods on the 90% of the test set outside its "
        "labelled 10% hold-out (which picks the OC-SVM's gamma and nu); the deep columns above "
        "use the whole test set. On that same 90% part the deep methods' mean AUCs are: "
        + ", ".join(parts)
        + f" (over the {len(done)} classes done)."
    )


def comparison_line(rows: list[dict[str, Any]], schedule: dict[str, Any]) -> str:
    """Our means over classes next to the literature's, for the methods it quotes."""
    done = [r for r in rows if ONE_CLASS in r and "ocsvm" in r]
    if not done:
        return ""
    ours = {key: np.mean([r[key][0] for r in done]) for key in (ONE_CLASS, "ocsvm")}
    paper = (schedule["pretrain_epochs"], schedule["epochs"]) == PAPER_EPOCHS
    return (
        f"Ours, mean over the {len(done)} classes done: OC-Deep SVDD {ours[ONE_CLASS]:.1f} "
        f"(literature 85 to 89), OC-SVM {ours['ocsvm']:.1f} (literature 92.8). "
        + (
            "The deep schedule here is the paper's: DCAE 250 + 100 and Deep SVDD 150 + 100 epochs."
            if paper
            else "The deep schedule here is shorter than the paper's DCAE 250 + 100 and Deep "
            "SVDD 150 + 100 epochs (see below)."
        )
    )


def paper_line(rows: list[dict[str, Any]], dataset: str) -> str:
    """Our one-class Deep SVDD per class next to the paper's Table 1, where it has the dataset."""
    paper = PAPER_ONE_CLASS.get(dataset)
    done = [r for r in rows if ONE_CLASS in r]
    if paper is None or not done:
        return ""
    pairs = ", ".join(f"{r['name']} {r[ONE_CLASS][0]:.1f} ({paper[r['class']]})" for r in done)
    return f"One-class Deep SVDD, ours (the paper's Table 1): {pairs}."


def write_report(out: Path, results: dict[str, Any], class_names: list[str]) -> None:
    rows = summarise(results, class_names)
    dataset = results.get("dataset", DATASET)
    s = results["schedule"]
    deep_seconds = sum(r["seconds"]["total"] for r in results["deep"].values())
    shallow_seconds = sum(r["seconds"] for r in results["shallow"].values())
    n_deep = len(results["deep"])
    lines = [
        f"# Table 1 on {DISPLAY.get(dataset, dataset)}: one-class AUC (%)",
        "",
        "Each class in turn is the normal class; test set: all the test images, the normal "
        "class labelled 0, the nine others 1. Deep columns: mean ± std over seeds "
        f"{', '.join(map(str, results['seeds']))}; shallow columns: one run (seed 0). "
        "The best of each row in bold.",
        "",
        *markdown_table(rows, len(results["seeds"]), anogan_column(dataset)),
        *anogan_note(anogan_column(dataset)),
        "",
        "Soft-boundary Deep SVDD, both nu (the table above keeps the better, as the paper does):",
        "",
        *both_nus_table(rows, s["soft_boundary_nus"]),
        "",
        "## Comparison",
        "",
        *(
            [LITERATURE, comparison_line(rows, s)]
            if dataset == DATASET
            else [paper_line(rows, dataset)]
        ),
        "",
        *(
            [
                "The better nu of soft-boundary Deep SVDD is picked per class on the test AUC, "
                "as the paper reports the better of the two: an optimistic choice.",
                "",
            ]
            if s["soft_boundary_nus"]
            else []
        ),
        eval_part_line(rows),
        "",
        "## How these were made",
        "",
        "- Training data: the normal class's training images less a seeded "
        f"{s['holdout']:.0%} hold-out (`split_normal`, as `deepsvdd train`); GCN-L1 + min-max "
        "fitted on them.",
        f"- DCAE: {s['pretrain_epochs']} epochs, lr {s['lr']:g} then x0.1 from epoch "
        f"{s['pretrain_milestone']}; its encoder initialises every Deep SVDD run of the same "
        "(class, seed); DCAE score = summed squared reconstruction error per image.",
        f"- Deep SVDD: {s['epochs']} epochs, lr {s['lr']:g} then x0.1 from epoch "
        f"{s['milestone']}, batch {s['batch_size']}, weight decay {s['weight_decay']:g}"
        + (
            f"; soft-boundary R solved after every epoch from epoch {s['warm_up_epochs']}."
            if s["soft_boundary_nus"]
            else " (one-class only)."
        ),
        "- Shallow baselines: `training.baselines.run_baselines` on the flattened preprocessed "
        "images (PCA 95% variance; OC-SVM gamma/nu on a 10% labelled hold-out of the test set; "
        "KDE bandwidth by 5-fold CV; IF 100 trees, 256 samples).",
        f"- Compute: {deep_seconds / 3600:.2f} h for {n_deep} deep (class, seed) runs "
        f"({deep_seconds / max(n_deep, 1) / 60:.1f} min each) and {shallow_seconds / 60:.1f} min "
        f"for the shallow baselines of {len(results['shallow'])} classes; CPU: "
        f"{results['machine']}.",
        "- Command(s):",
        "",
        *[f"      {c}" for c in results["commands"]],
        "",
        "Raw per-(class, seed) figures, radii, timings and chosen hyper-parameters: "
        "`table1.json`; bar chart: `table1.png`.",
        "",
    ]
    write_text(out / "table1.md", "\n".join(lines) + kept_notes(out / "table1.md"))
    plot(out / "table1.png", rows, dataset)


def kept_notes(report: Path) -> str:
    """The report's hand-written section (from NOTES_HEADING on), which a rewrite keeps."""
    if not report.exists():
        return ""
    text = report.read_text()
    at = text.find(NOTES_HEADING)
    return "" if at < 0 else "\n" + text[at:]


def plot(path: Path, rows: list[dict[str, Any]], dataset: str = DATASET) -> None:
    """Grouped bars per class, plus the mean over classes when every class has every method."""
    groups = list(rows)
    if rows and all(key in r for r in rows for key, _ in COLUMNS):
        mean = {key: (float(np.mean([r[key][0] for r in rows])), 0.0) for key, _ in COLUMNS}
        groups.append({"name": "mean", **mean})
    fig = Figure(figsize=(13, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(COLUMNS)
    xs = np.arange(len(groups))
    for i, (key, head) in enumerate(COLUMNS):
        means = [g[key][0] if key in g else np.nan for g in groups]
        stds = [g[key][1] if key in g else 0.0 for g in groups]
        ax.bar(xs + (i - (len(COLUMNS) - 1) / 2) * width, means, width, yerr=stds, label=head)
    ax.set_xticks(xs, [g["name"] for g in groups], rotation=20)
    ax.set_ylabel("test AUC (%)")
    ax.set_ylim(40, 100)
    ax.set_title(f"{dataset} one-class AUC per normal class (error bars: std over seeds)")
    ax.legend(ncols=len(COLUMNS), loc="upper center", bbox_to_anchor=(0.5, -0.14))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
