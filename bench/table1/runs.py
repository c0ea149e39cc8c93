"""One (class, seed) of Table 1: the DCAE, each Deep SVDD variant from its encoder, and the
shallow baselines, with their AUCs on the whole test set and on the baselines' 90% part."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bench.table1.schedule import SCORE_BATCH, Schedule, soft_key
from training import baselines, preprocess
from training.batches import as_images
from training.calibration import auc_or_none
from training.config import ONE_CLASS, SOFT_BOUNDARY, TrainConfig
from training.deepsvdd import pretrain_loop, score, summed_error, train_deepsvdd
from training.networks import Autoencoder, Encoder, NetConfig
from training.pipeline import seed_everything
from training.run import Split


def train_dcae(net_cfg: NetConfig, x: torch.Tensor, cfg: TrainConfig) -> tuple[Autoencoder, float]:
    """`deepsvdd train`'s DCAE pretraining (training.deepsvdd.pretrain_loop), keeping the
    decoder, which the DCAE score needs.

    Seeded as `deepsvdd train` seeds it (pipeline.fit builds the Deep SVDD encoder first, then
    the autoencoder), so the encoder equals the one `deepsvdd train` pretrains. Returns the
    autoencoder and the mean training loss of its last epoch.
    """
    seed_everything(cfg.seed)
    Encoder(net_cfg)  # consumes the global RNG as pipeline.fit does before pretraining
    ae = Autoencoder(net_cfg)
    history, _ = pretrain_loop(
        "pretrain DCAE", ae, summed_error, as_images(x), cfg, None, False, None
    )
    ae.eval()
    return ae, history[-1]


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

    variants = [(ONE_CLASS, schedule.train_config(seed))] + [
        (soft_key(nu), schedule.train_config(seed, SOFT_BOUNDARY, nu)) for nu in schedule.soft_nus
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
