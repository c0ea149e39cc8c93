"""The paper's section 4.3 (Table 2, Figure 4): detecting adversarial examples of the normal class
with one-class methods trained on clean normal images; results kept in <dataset>.json as they come.

Run from the repository root: `.venv/bin/python -m bench.adversarial --help`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from bench.adversarial.attacks import (
    ATTACKS,
    AttackConfig,
    Classifier,
    predict,
    run_attack,
    train_classifier,
)
from bench.adversarial.report import SOFT_NUS, write_report
from bench.harness.machine import cpu_line
from bench.harness.progress import now
from bench.harness.results import load_results, save_results
from bench.table1.runs import reconstruction_error, train_dcae
from bench.table1_anogan.anogan import AnoGANConfig, anomaly_score, train_anogan
from training import baselines, preprocess
from training.calibration import auc_or_none
from training.config import ONE_CLASS, SOFT_BOUNDARY, TrainConfig
from training.data import ImageSet, load_dataset, resolve_class
from training.deepsvdd import score, train_deepsvdd
from training.networks import Encoder, NetConfig, make_config
from training.pipeline import seed_everything

OUT = Path(__file__).resolve().parent
# The data paths: network, batch size, default normal classes and attacks.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "gtsrb": {"arch": "gtsrb", "batch": 64, "classes": ["14"], "attacks": ["boundary"]},
    "fashion-mnist": {"arch": "mnist", "batch": 200, "classes": ["0"], "attacks": list(ATTACKS)},
}


@dataclass(frozen=True)
class Schedule:
    """What must match for a resumed run to continue a results file."""

    dataset: str
    attacks: tuple[str, ...]
    n_adversarial: int
    n_normal: int | None
    classifier_epochs: int
    pretrain_epochs: int
    epochs: int
    anogan: AnoGANConfig
    attack: AttackConfig

    def train_config(self, seed: int, objective: str = ONE_CLASS, nu: float = 0.1) -> TrainConfig:
        return TrainConfig(
            objective=objective,  # type: ignore[arg-type]
            nu=nu,
            epochs=self.epochs,
            pretrain_epochs=self.pretrain_epochs,
            batch_size=PROTOCOLS[self.dataset]["batch"],
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        cfg = self.train_config(0)
        return {
            "dataset": self.dataset,
            "attacks": list(self.attacks),
            "n_adversarial": self.n_adversarial,
            "n_normal": self.n_normal,
            "classifier_epochs": self.classifier_epochs,
            "pretrain_epochs": self.pretrain_epochs,
            "epochs": self.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "soft_boundary_nus": list(SOFT_NUS),
            "anogan": self.anogan.to_dict(),
            "attack": self.attack.to_dict(),
        }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.adversarial", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--dataset", choices=sorted(PROTOCOLS), default="fashion-mnist")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--classes", nargs="+", default=None, help="normal classes (gtsrb: 14)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--attacks", nargs="+", choices=ATTACKS, default=None)
    p.add_argument("--n-adversarial", type=int, default=20, help="adversarial test images (20)")
    p.add_argument(
        "--n-normal", type=int, default=None, help="normal test images drawn (default: all)"
    )
    p.add_argument("--classifier-epochs", type=int, default=10)
    p.add_argument("--pretrain-epochs", type=int, default=350, help="DCAE (paper 250 + 100)")
    p.add_argument("--epochs", type=int, default=250, help="Deep SVDD (paper 150 + 100)")
    p.add_argument("--anogan-epochs", type=int, default=25)
    p.add_argument("--anogan-steps", type=int, default=500, help="latent search steps")
    p.add_argument("--boundary-steps", type=int, default=5000)
    p.add_argument("--fgsm-eps", type=float, default=0.1)
    p.add_argument("--pgd-eps", type=float, default=0.1)
    p.add_argument("--out", type=Path, default=OUT, help="output folder (bench/adversarial)")
    p.add_argument("--resume", action="store_true", help="continue <dataset>.json")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if min(args.n_adversarial, args.classifier_epochs, args.pretrain_epochs, args.epochs) < 1:
        p.error("--n-adversarial and the epoch counts must be at least 1")
    return args


# --- Adversarial test sets -------------------------------------------------------------------


def classifier_for(data: ImageSet, schedule: Schedule, out: Path) -> tuple[torch.nn.Module, float]:
    """The attacked classifier, trained on every class of the training split (kept in out/)."""
    assert data.x_test is not None and data.y_test is not None
    x = preprocess.to_unit_tensor(np.asarray(data.x_train))
    _, c, h, _ = x.shape
    path = out / f"{schedule.dataset}-classifier.pt"
    if path.exists():
        model = Classifier(c, h, len(data.class_names))
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
    else:
        y = torch.from_numpy(data.y_train)
        model = train_classifier(
            x, y, len(data.class_names), epochs=schedule.classifier_epochs, seed=0
        )
        torch.save(model.state_dict(), path)
    x_test = preprocess.to_unit_tensor(np.asarray(data.x_test))
    accuracy = float((predict(model, x_test) == torch.from_numpy(data.y_test)).float().mean())
    return model, accuracy


def adversarial_sets(
    data: ImageSet, k: int, model: torch.nn.Module, schedule: Schedule, path: Path
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The normal test images (index "normal" into the test split) and, per attack, the first
    n_adversarial successful adversarial images made from a seeded draw of them (float32
    [0, 1], NCHW); saved to / read from `path` (npz) with each attack's summary.

    The draw is attacked in chunks of 1.5 x n_adversarial until enough attacks succeed (an
    L-inf attack within a small budget fails on many images) or the normal images run out.
    """
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            kept = {key: f[key] for key in f.files}
        return kept, json.loads(str(kept.pop("summary")))
    assert data.x_test is not None and data.y_test is not None
    rng = np.random.default_rng(0)
    members = rng.permutation(np.flatnonzero(data.y_test == k))
    normal = np.sort(members[: schedule.n_normal] if schedule.n_normal else members)
    order = rng.permutation(normal)
    chunk = int(np.ceil(1.5 * schedule.n_adversarial))
    sets: dict[str, np.ndarray] = {"normal": normal}
    summary: dict[str, Any] = {}
    for name in schedule.attacks:
        t0 = time.perf_counter()
        parts = []
        for start in range(0, len(order), chunk):
            candidates = order[start : start + chunk]
            x = preprocess.to_unit_tensor(data.x_test[candidates])
            y = torch.full((len(x),), k, dtype=torch.int64)
            parts.append((candidates, run_attack(model, x, y, name, schedule.attack)))
            if sum(int(r.success.sum()) for _, r in parts) >= schedule.n_adversarial:
                break
        success = np.concatenate([r.success for _, r in parts])
        l2 = np.concatenate([r.l2 for _, r in parts])
        linf = np.concatenate([r.linf for _, r in parts])
        adversarial = torch.cat([r.adversarial for _, r in parts])
        sources = np.concatenate([c[r.index] for c, r in parts])
        keep = np.flatnonzero(success)[: schedule.n_adversarial]
        sets[name] = adversarial[keep].numpy().astype(np.float32)
        sets[f"{name}_source"] = sources[keep]
        summary[name] = {
            "n_input": sum(r.n_input for _, r in parts),
            "n_attacked": len(success),
            "n_success": int(success.sum()),
            "success_rate": float(success.mean()) if len(success) else None,
            "median_l2": float(np.median(l2[success])) if success.any() else None,
            "max_linf": float(linf[keep].max()) if len(keep) else None,
            "n_kept": len(keep),
            "median_l2_kept": float(np.median(l2[keep])) if len(keep) else None,
            "seconds": time.perf_counter() - t0,
        }
    np.savez_compressed(path, allow_pickle=False, **sets, summary=np.array(json.dumps(summary)))
    return sets, summary


# --- Detectors -------------------------------------------------------------------------------


def shallow_scores(
    x_train: np.ndarray, x_test: np.ndarray, holdouts: dict[str, tuple[np.ndarray, np.ndarray]]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """OC-SVM, KDE and IF scores on x_test, as `baselines.run_baselines` fits them (PCA 95%,
    KDE bandwidth by 5-fold CV, IF 100 trees of 256), fitted once; the OC-SVM's (nu, gamma) is
    picked per attack on that attack's labelled hold-out (indices into x_test, labels)."""
    pca = PCA(n_components=baselines.PCA_VARIANCE, svd_solver="full").fit(x_train)
    z_train, z_test = pca.transform(x_train), pca.transform(x_test)
    kde = baselines.select_kde(z_train, 0)
    forest = IsolationForest(
        n_estimators=baselines.IFOREST_TREES,
        max_samples=min(baselines.IFOREST_SUBSAMPLE, len(z_train)),
        random_state=0,
    ).fit(z_train)
    grid = [(nu, g) for nu in baselines.OCSVM_NUS for g in baselines.OCSVM_GAMMAS]
    svm = {p: -baselines.ocsvm(*p).fit(z_train).decision_function(z_test) for p in grid}
    scores = {"kde": -kde.score_samples(z_test), "iforest": -forest.score_samples(z_test)}
    chosen: dict[str, Any] = {"pca_components": int(pca.n_components_), "kde": kde.bandwidth}
    for attack, (idx, labels) in holdouts.items():
        best = max(grid, key=lambda p: auc_or_none(labels, svm[p][idx]) or 0.0)
        scores[f"ocsvm/{attack}"] = svm[best]
        chosen[f"ocsvm/{attack}"] = {"nu": best[0], "gamma": best[1]}
    return scores, chosen


def deep_scores(
    net_cfg: NetConfig, x: torch.Tensor, x_test: torch.Tensor, schedule: Schedule, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """DCAE, then one-class and soft-boundary Deep SVDD from its encoder, then AnoGAN."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    ae, _ = train_dcae(net_cfg, x, schedule.train_config(seed))
    scores = {"dcae": reconstruction_error(ae, x_test).numpy()}
    seconds["dcae"] = time.perf_counter() - t0
    variants = [(ONE_CLASS, schedule.train_config(seed))] + [
        (f"{SOFT_BOUNDARY}-nu{nu:g}", schedule.train_config(seed, SOFT_BOUNDARY, nu))
        for nu in SOFT_NUS
    ]
    for key, cfg in variants:
        t0 = time.perf_counter()
        net = Encoder(net_cfg)
        net.load_state_dict(ae.encoder.state_dict())
        state = train_deepsvdd(net, x, cfg)
        scores[key] = score(state.net, state.c, x_test).numpy()
        seconds[key] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cfg_gan = replace(schedule.anogan, seed=seed)
    scores["anogan"] = anomaly_score(train_anogan(x, cfg_gan), x_test)
    seconds["anogan"] = time.perf_counter() - t0
    return scores, seconds


def run_seed(
    data: ImageSet, k: int, sets: dict[str, np.ndarray], schedule: Schedule, seed: int
) -> dict[str, Any]:
    """Every detector trained on the clean normal training images, scored on the normal test
    images + each attack's adversarial ones; AUCs on the part outside the OC-SVM hold-out."""
    assert data.x_test is not None
    started = time.perf_counter()
    seed_everything(seed)
    train = data.x_train[data.y_train == k]
    pre = preprocess.fit_preprocess(train)
    x = preprocess.apply(pre, train)
    normal = preprocess.to_unit_tensor(data.x_test[sets["normal"]])
    adv = [torch.from_numpy(sets[a]) for a in schedule.attacks]
    with torch.no_grad():
        x_test = pre(torch.cat([normal, *adv]))  # the union: every method scores it once
    n = len(normal)
    rows, labels, holdouts, evals = {}, {}, {}, {}
    start = n
    for a, part in zip(schedule.attacks, adv, strict=True):
        rows[a] = np.r_[np.arange(n), np.arange(start, start + len(part))]
        labels[a] = np.r_[np.zeros(n, np.int64), np.ones(len(part), np.int64)]
        hold, ev, _, _ = baselines.split_holdout(np.arange(len(rows[a]))[:, None], labels[a], seed)
        holdouts[a] = (rows[a][hold[:, 0]], labels[a][hold[:, 0]])
        evals[a] = np.sort(ev[:, 0])
        start += len(part)
    net_cfg = make_config(PROTOCOLS[schedule.dataset]["arch"], *x.shape[1:])
    t0 = time.perf_counter()
    flat_train, flat_test = x.flatten(1).double().numpy(), x_test.flatten(1).double().numpy()
    scores, chosen = shallow_scores(flat_train, flat_test, holdouts)
    seconds = {"shallow": time.perf_counter() - t0}
    deep, deep_seconds = deep_scores(net_cfg, x, x_test, schedule, seed)
    scores.update(deep)
    auc: dict[str, dict[str, float | None]] = {}
    for a in schedule.attacks:
        idx, lab = rows[a][evals[a]], labels[a][evals[a]]
        auc[a] = {
            m: auc_or_none(lab, s[idx])
            for m, s in scores.items()
            if "/" not in m or m.endswith(f"/{a}")
        }
        auc[a]["ocsvm"] = auc[a].pop(f"ocsvm/{a}")
    return {
        "class": k,
        "seed": seed,
        "n_train": len(x),
        "n_eval": {a: len(evals[a]) for a in schedule.attacks},
        "auc": auc,
        "chosen": chosen,
        "one_class_scores": scores[ONE_CLASS].tolist(),  # for Figure 4
        "seconds": {**seconds, **deep_seconds, "total": time.perf_counter() - started},
    }


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    protocol = PROTOCOLS[args.dataset]
    schedule = Schedule(
        dataset=args.dataset,
        attacks=tuple(args.attacks or protocol["attacks"]),
        n_adversarial=args.n_adversarial,
        n_normal=args.n_normal,
        classifier_epochs=args.classifier_epochs,
        pretrain_epochs=args.pretrain_epochs,
        epochs=args.epochs,
        anogan=AnoGANConfig(epochs=args.anogan_epochs, search_steps=args.anogan_steps),
        attack=AttackConfig(
            fgsm_eps=args.fgsm_eps, pgd_eps=args.pgd_eps, boundary_steps=args.boundary_steps
        ),
    )
    data = load_dataset(args.dataset, args.data_dir)
    if data.x_test is None or data.y_test is None:
        raise SystemExit(f"{args.dataset}: no test split to attack")
    classes = [resolve_class(data, c) for c in (args.classes or protocol["classes"])]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.dataset}.json"
    fresh = {"schedule": schedule.to_dict(), "commands": [], "sets": {}, "runs": {}}
    results = load_results(path, fresh, args.resume)
    results["commands"].append(shlex.join([".venv/bin/python", "-m", "bench.adversarial", *argv]))
    results["machine"] = cpu_line(args.threads)
    print(f"[{now()}] classifier on all {len(data.class_names)} classes", flush=True)
    model, accuracy = classifier_for(data, schedule, args.out)
    results["classifier_test_accuracy"] = accuracy
    for k in classes:
        name = data.class_names[k]
        print(f"[{now()}] {name}: adversarial sets ({', '.join(schedule.attacks)})", flush=True)
        sets, summary = adversarial_sets(
            data, k, model, schedule, args.out / f"{args.dataset}-{name}-sets.npz"
        )
        results["sets"][name] = summary
        save_results(path, results, ("sets", "runs"))
        for seed in args.seeds:
            key = f"{name}/{seed}"
            if key in results["runs"]:
                continue
            print(f"[{now()}] {key}: detectors", flush=True)
            results["runs"][key] = {"class_name": name, **run_seed(data, k, sets, schedule, seed)}
            save_results(path, results, ("sets", "runs"))
            one = {a: round(100 * v[ONE_CLASS], 1) for a, v in results["runs"][key]["auc"].items()}
            print(f"    one-class Deep SVDD AUC {one}", flush=True)
    write_report(args.out, results, data)
    print(f"wrote {path} and {args.out / (args.dataset + '.md')}")
