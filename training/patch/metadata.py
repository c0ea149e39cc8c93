"""The metadata a patch model ships with: kind "patch", its grid and memory bank (`PatchInfo`),
the mean normal patch feature as `center`, and thresholds calibrated on held-out image scores."""

from __future__ import annotations

import datetime as dt

from modelfile.metadata import FORMAT_VERSION, InputSpec, ModelMetadata, PatchInfo
from training.calibration import DEFAULT_THRESHOLD, TrainingFigures
from training.config import ONE_CLASS
from training.metadata import software_versions
from training.patch import fit
from training.patch.bands import SIGMAS
from training.patch.network import STRIDE
from training.patch.scoring import SCORE_RULE, WHITEN_EPS
from training.patch.types import PatchRun, PatchTrained


def patch_info(run: PatchRun, trained: PatchTrained) -> PatchInfo:
    return PatchInfo(
        size=trained.scoring.encoder.scale_sizes()[0],  # the map's cells: its smallest patches
        stride=STRIDE,
        grid=list(run.grid),
        coreset=trained.coreset,
        bank=trained.bank_size,
        dims=run.net_cfg.dim,
        score=SCORE_RULE,
        views=trained.scoring.views.names(),
    )


LOSSES = {
    "position": "relative-position cross-entropy + lambda x SVDD' (jittered neighbours)",
    "synthetic": "per-patch binary cross-entropy: synthetic local anomalies made from the normal"
    " images (CutPaste rectangles and scars), balanced, at every scale",
}


def training_record(run: PatchRun, trained: PatchTrained) -> dict[str, object]:
    pre = trained.scoring.pre
    return {
        **run.cfg.to_dict(),
        "method": "patch-svdd",
        "net": run.net_cfg.to_dict(),
        "preprocessing": {
            "standardise": "per channel (x - mean) / std",
            "mean": [float(v) for v in pre.mean.flatten()],
            "std": [float(v) for v in pre.std.flatten()],
        },
        "losses": LOSSES[run.cfg.patch_objective] if run.cfg.patch_epochs else "none (untrained)",
        "lambda": fit.LAMBDA,
        "patch_lr": fit.PATCH_LR,
        "images_per_step": fit.IMAGES_PER_STEP,
        "pairs_per_image": fit.PAIRS_PER_IMAGE,
        "pair_geometry": {"step": run.geo.step, "jitter": run.geo.jitter},
        "epoch_losses": [round(v, 5) for v in trained.fit.losses],
        "position_accuracy": trained.fit.position_accuracy,
        "coreset_seconds": trained.coreset_seconds,
        "views": trained.scoring.view_records(),
        "texture": trained.scoring.texture.record(),
        "top_cells": trained.scoring.top_cells,
        "whiten_eps": WHITEN_EPS,
        "band_sigmas": list(SIGMAS),
        "seconds": trained.fit.seconds,
        "score": SCORE_RULE,
    }


def build_patch_metadata(
    run: PatchRun, trained: PatchTrained, calibration: TrainingFigures, version: int
) -> ModelMetadata:
    _, h, w, ch = run.data.x_train.shape
    return ModelMetadata(
        format_version=FORMAT_VERSION,
        name=run.name,
        kind="patch",
        patch=patch_info(run, trained),
        version=version,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        objective=ONE_CLASS,
        nu=run.cfg.nu,
        center=[float(v) for v in trained.scoring.c],
        radius=None,
        thresholds=calibration.thresholds,
        expected_anomaly_rate=calibration.rates,
        default_threshold=DEFAULT_THRESHOLD[ONE_CLASS],
        decode=run.spec.decode,  # how training's folder loader decoded its images
        input=InputSpec(channels=ch, height=h, width=w, color=run.data.color),  # type: ignore[arg-type]
        dataset=run.dataset_info(),
        metrics={
            "auc": calibration.auc,
            "train_fraction_outside": None,
            "train_score_std": calibration.train_score_std,
        },
        calibration=calibration.calibration,
        score_reference=calibration.reference,
        training=training_record(run, trained),
        software=software_versions(),
    )
