"""The paper's Table 1 (Fashion-MNIST; MNIST and CIFAR-10 with --dataset): test AUC of Deep SVDD
(one-class, soft-boundary), the DCAE and the shallow baselines for each class as normal; results
kept in table1.json as they come.

Run from the repository root: `.venv/bin/python bench/table1.py --help`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import datetime as dt
import fcntl
import json
import os
import platform
import shlex
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training import baselines, preprocess
from training.calibration import auc_or_none
from training.data import ImageSet, load_dataset, resolve_class
from training.data.download import download_missing
from training.deepsvdd import (
    TrainConfig,
    batches,
    score,
    standard_layout,
    train_deepsvdd,
    training_layout,
)
from training.networks import Autoencoder, Encoder, NetConfig, make_config
from training.pipeline import DEFAULT_ARCH, Split, seed_everything, split_normal

DATASET = "fashion-mnist"
HOLDOUT = 0.1  # share of the normal training images kept out, as `deepsvdd train` does
SOFT_NUS = (0.01, 0.1)
PAPER_EPOCHS = (350, 250)  # DCAE 250 + 100 and Deep SVDD 150 + 100 epochs (section 4.1)
SHALLOW = ("ocsvm", "kde", "iforest")
# Table columns: (key, heading); "soft-boundary" is the better nu of each class.
COLUMNS = (
    ("one-class", "OC-Deep SVDD"),
    ("soft-boundary", "SB-Deep SVDD (best nu)"),
    ("dcae", "DCAE"),
    ("ocsvm", "OC-SVM"),
    ("kde", "KDE"),
    ("iforest", "IF"),
)
LITERATURE = (
    "Fashion-MNIST mean AUC in the literature (METHOD.md): Deep SVDD about 85 to 89 as cited "
    "by later papers; OC-SVM about 92.8; GOAD about 94.1."
)
SCORE_BATCH = 1024
DISPLAY = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10"}
# A report's section from this heading on is written by hand and kept when it is rewritten.
NOTES_HEADING = "## Notes (by hand"
# bench/table1_anogan.py's results: the AnoGAN column, measured on a stratified test subset.
ANOGAN = Path(__file__).resolve().parent / "table1-anogan.json"
# The paper's Table 1, one-class Deep SVDD per class (MNIST digits 0-9, CIFAR-10 classes).
PAPER_ONE_CLASS = {
    "mnist": (98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5),
    "cifar10": (61.7, 65.9, 50.8, 59.1, 60.9, 65.7, 67.7, 67.3, 75.9, 73.1),
}


@dataclass(frozen=True)
class Schedule:
    """The hyper-parameters that must match for a resumed run to continue an earlier one
    (classes and seeds may differ: a resumed run adds its (class, seed) pairs to the file)."""

    pretrain_epochs: int
    epochs: int
    soft_boundary: bool = True  # False: DCAE and one-class Deep SVDD only

    @property
    def soft_nus(self) -> tuple[float, ...]:
        return SOFT_NUS if self.soft_boundary else ()

    def train_config(self, seed: int, objective: str = "one-class", nu: float = 0.1) -> TrainConfig:
        return TrainConfig(
            objective=objective,  # type: ignore[arg-type]
            nu=nu,
            epochs=self.epochs,
            pretrain_epochs=self.pretrain_epochs,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        cfg = self.train_config(0)
        return {
            "pretrain_epochs": self.pretrain_epochs,
            "pretrain_milestone": cfg.pretrain_milestone,
            "epochs": self.epochs,
            "milestone": cfg.milestone,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "weight_decay": cfg.weight_decay,
            "warm_up_epochs": cfg.warm_up_epochs,
            "soft_boundary_nus": list(self.soft_nus),
            "holdout": HOLDOUT,
        }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrain-epochs", type=int, default=50, help="DCAE epochs (default 50)")
    p.add_argument("--epochs", type=int, default=50, help="Deep SVDD epochs (default 50)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--classes", nargs="+", default=None, help="class names or indices (default: all ten)"
    )
    p.add_argument("--dataset", choices=("fashion-mnist", "mnist", "cifar10"), default=DATASET)
    p.add_argument("--data-dir", type=Path, default=None, help="the dataset's folder")
    p.add_argument("--download", action="store_true", help="fetch the dataset if absent")
    p.add_argument("--out", type=Path, default=Path("bench"), help="output folder (bench/)")
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


# --- DCAE ------------------------------------------------------------------------------------


def train_dcae(net_cfg: NetConfig, x: torch.Tensor, cfg: TrainConfig) -> tuple[Autoencoder, float]:
    """The loop of deepsvdd.pretrain_dcae, kept here because the DCAE score needs the decoder.

    Seeded as `deepsvdd train` seeds it (pipeline.fit builds the Deep SVDD encoder first, then
    the autoencoder), so the encoder equals the one `deepsvdd train` pretrains. Returns the
    autoencoder and the mean training loss of its last epoch.
    """
    seed_everything(cfg.seed)
    Encoder(net_cfg)  # consumes the global RNG as pipeline.fit does before pretraining
    ae = Autoencoder(net_cfg)
    opt = torch.optim.Adam(ae.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [cfg.pretrain_milestone], gamma=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    training_layout(ae, x.device)
    x = x.contiguous(memory_format=torch.channels_last)
    total = 0.0
    for _ in range(cfg.pretrain_epochs):
        ae.train()
        total = 0.0
        for idx in batches(len(x), cfg.batch_size, gen):
            xb = x[idx]
            loss = ((ae(xb) - xb) ** 2).sum(dim=(1, 2, 3)).mean()  # summed squared error
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
    standard_layout(ae)
    ae.eval()
    return ae, total / len(x)


@torch.no_grad()
def reconstruction_error(ae: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared pixel errors per image, (N,): the DCAE's anomaly score."""
    ae.eval()
    return torch.cat([((ae(xb) - xb) ** 2).sum(dim=(1, 2, 3)) for xb in x.split(SCORE_BATCH)])


# --- One (class, seed) -----------------------------------------------------------------------


def aucs(labels: np.ndarray, scores: np.ndarray, eval_idx: np.ndarray) -> tuple[float, float]:
    """AUC on the whole test set and on the baselines' evaluation part (90%)."""
    full = auc_or_none(labels, scores)
    part = auc_or_none(labels[eval_idx], scores[eval_idx])
    if full is None or part is None:
        raise ValueError("the test labels hold a single class: no AUC")
    return full, part


def evaluation_indices(labels: np.ndarray) -> np.ndarray:
    """Indices of the test images that run_baselines scores (outside its labelled hold-out)."""
    index = np.arange(len(labels))[:, None]
    _, eval_part, _, _ = baselines.split_holdout(index, labels, 0)
    return np.sort(eval_part[:, 0])


def run_deep(
    net_cfg: NetConfig, split: Split, schedule: Schedule, seed: int, eval_idx: np.ndarray
) -> dict[str, Any]:
    """DCAE once, then each Deep SVDD variant from its encoder; AUCs, radii and timings."""
    assert split.test is not None and split.test_labels is not None
    started = time.perf_counter()
    pre = preprocess.fit_preprocess(split.train)
    x = preprocess.apply(pre, split.train)
    x_test = preprocess.apply(pre, split.test)
    labels = split.test_labels
    record: dict[str, Any] = {"seed": seed, "n_train": len(x), "auc": {}, "auc_eval": {}}
    seconds: dict[str, float] = {}
    radius: dict[str, float | None] = {}

    t0 = time.perf_counter()
    ae, dcae_loss = train_dcae(net_cfg, x, schedule.train_config(seed))
    dcae_scores = reconstruction_error(ae, x_test).numpy()
    record["auc"]["dcae"], record["auc_eval"]["dcae"] = aucs(labels, dcae_scores, eval_idx)
    seconds["dcae"] = time.perf_counter() - t0
    record["dcae_final_loss"] = dcae_loss

    variants = [("one-class", schedule.train_config(seed))] + [
        (f"soft-boundary-nu{nu:g}", schedule.train_config(seed, "soft-boundary", nu))
        for nu in schedule.soft_nus
    ]
    for key, cfg in variants:
        t0 = time.perf_counter()
        net = Encoder(net_cfg)
        net.load_state_dict(ae.encoder.state_dict())  # weights and BN buffers
        state = train_deepsvdd(net, x, cfg)
        test_scores = score(state.net, state.c, x_test).numpy()
        record["auc"][key], record["auc_eval"][key] = aucs(labels, test_scores, eval_idx)
        train_dist = score(state.net, state.c, x)
        record.setdefault("train_score_std", {})[key] = float(train_dist.std())
        record.setdefault("final_loss", {})[key] = state.history["train"][-1]
        if state.R is not None:
            outside = float((train_dist > state.R**2).float().mean())
            record.setdefault("train_fraction_outside", {})[key] = outside
        radius[key] = state.R
        seconds[key] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    return {**record, "radius": radius, "seconds": seconds}


def run_shallow(split: Split) -> dict[str, Any]:
    """OC-SVM, KDE and IF on the GCN + min-max images, flattened."""
    assert split.test is not None and split.test_labels is not None
    started = time.perf_counter()
    pre = preprocess.fit_preprocess(split.train)
    x = preprocess.apply(pre, split.train).flatten(1).numpy()
    x_test = preprocess.apply(pre, split.test).flatten(1).numpy()
    result = baselines.run_baselines(x, x_test, split.test_labels, seed=0)
    return {**result, "seconds": time.perf_counter() - started}


# --- Results file ----------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_results(path: Path, schedule: Schedule, resume: bool) -> dict[str, Any]:
    fresh = {
        "schedule": schedule.to_dict(),
        "classes": [],
        "seeds": [],
        "commands": [],
        "deep": {},
        "shallow": {},
    }
    if not path.exists():
        return fresh
    if not resume:
        raise SystemExit(f"{path} exists; pass --resume to continue it, or move it away")
    results: dict[str, Any] = json.loads(path.read_text())
    if results.get("schedule") != fresh["schedule"]:
        raise SystemExit(
            f"{path} was written with schedule {results.get('schedule')}, not "
            f"{fresh['schedule']}; use another --out or the same flags"
        )
    return results


def save_results(path: Path, results: dict[str, Any]) -> None:
    """Writes results merged with what the file holds now, under a lock, so that several
    processes given different classes or seeds can fill one file side by side."""
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            disk = json.loads(path.read_text())
            for part in ("deep", "shallow"):
                results[part] = {**disk[part], **results[part]}
            for part in ("classes", "seeds"):
                results[part] = sorted({*disk[part], *results[part]})
            results["commands"] = list(dict.fromkeys([*disk["commands"], *results["commands"]]))
        write_atomic(path, (json.dumps(results, indent=1) + "\n").encode())


# --- Report ----------------------------------------------------------------------------------


def deep_keys(results: dict[str, Any]) -> tuple[str, ...]:
    nus = results["schedule"]["soft_boundary_nus"]
    return ("one-class", *(f"soft-boundary-nu{nu:g}" for nu in nus), "dcae")


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
                best = max(nus, key=lambda nu: row[f"soft-boundary-nu{nu:g}"][0])
                row["soft-boundary"] = row[f"soft-boundary-nu{best:g}"]
                row["soft-boundary_eval"] = row[f"soft-boundary-nu{best:g}_eval"]
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
            deep = key in ("one-class", "soft-boundary", "dcae")
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
        f"† AnoGAN, from `table1-anogan.md` (`bench/table1_anogan.py`): its latent search per "
        "test image does not fit the whole test set here, so it is scored on a seeded "
        f"stratified subset ({gan['per_class']} test images per class, the 90% outside the "
        f"OC-SVM hold-out), one seed ({gan['seed']}), DCGAN {gan['anogan']['epochs']} epochs, "
        f"{gan['anogan']['search_steps']} search steps: not the test set of the other columns. "
        "On that same subset, with the shortened schedule there, OC-Deep SVDD has "
        f"{subset_mean('one-class'):.1f} and KDE {subset_mean('kde'):.1f} mean AUC.",
    ]


def subset_mean(method: str) -> float:
    runs = json.loads(ANOGAN.read_text())["runs"].values()
    if method in SHALLOW:
        return float(np.mean([100 * r["shallow"][method] for r in runs]))
    return float(np.mean([100 * r["deep"]["auc_eval"][method] for r in runs]))


def both_nus_table(rows: list[dict[str, Any]], nus: list[float]) -> list[str]:
    if not nus:
        return ["Not run with this schedule (`--no-soft-boundary`)."]
    keys = [f"soft-boundary-nu{nu:g}" for nu in nus]
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
    done = [r for r in rows if "one-class" in r]
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
    done = [r for r in rows if "one-class" in r and "ocsvm" in r]
    if not done:
        return ""
    ours = {key: np.mean([r[key][0] for r in done]) for key in ("one-class", "ocsvm")}
    paper = (schedule["pretrain_epochs"], schedule["epochs"]) == PAPER_EPOCHS
    return (
        f"Ours, mean over the {len(done)} classes done: OC-Deep SVDD {ours['one-class']:.1f} "
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
    done = [r for r in rows if "one-class" in r]
    if paper is None or not done:
        return ""
    pairs = ", ".join(f"{r['name']} {r['one-class'][0]:.1f} ({paper[r['class']]})" for r in done)
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
    write_atomic(out / "table1.md", ("\n".join(lines) + kept_notes(out / "table1.md")).encode())
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- Main ------------------------------------------------------------------------------------


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
    results = load_results(path, schedule, args.resume)
    if results.setdefault("dataset", args.dataset) != args.dataset:
        raise SystemExit(f"{path} holds {results['dataset']} results; use another --out")
    results["commands"].append(shlex.join([".venv/bin/python", "bench/table1.py", *argv]))
    results["classes"] = sorted({*results["classes"], *classes})
    results["seeds"] = sorted({*results["seeds"], *args.seeds})
    results["machine"] = (
        f"{os.cpu_count()} CPUs ({cpu_model()}), {torch.get_num_threads()} torch threads"
    )
    save_results(path, results)

    for k in classes:
        name = data.class_names[k]
        if name not in results["shallow"]:
            print(f"[{now()}] {name}: shallow baselines", flush=True)
            results["shallow"][name] = run_shallow(split_normal(data, k, HOLDOUT, 0))
            save_results(path, results)
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
            save_results(path, results)
            aucs_pct = ", ".join(f"{m} {100 * v:.1f}" for m, v in run["auc"].items())
            print(f"    {aucs_pct}; {run['seconds']['total']:.0f} s", flush=True)
        write_report(args.out, results, data.class_names)
    write_report(args.out, results, data.class_names)
    print(f"wrote {path}, {args.out / 'table1.md'}, {args.out / 'table1.png'}")


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.machine()


def now() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


if __name__ == "__main__":
    main(sys.argv[1:])
