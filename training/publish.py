"""From a trained run to a published model version: calibrate, describe, export, summarise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modelfile.layout import claim_version
from modelfile.metadata import ModelMetadata
from training import preprocess
from training.advice import Notes, calibration_warnings
from training.batches import Uint8Images
from training.calibration import TrainingFigures, calibrate, with_class_aucs
from training.deepsvdd import score
from training.distributed import Dist
from training.export import ScoringModel, export_model
from training.metadata import build_metadata
from training.run import Run, Trained


def calibrate_trained(trained: Trained, run: Run) -> TrainingFigures:
    """Scores the hold-out, test and training images on the CPU and calibrates from them."""
    net, c, pre = trained.state.net.cpu(), trained.state.c.cpu(), trained.pre.cpu()
    split = run.split
    holdout = score(net, c, Uint8Images(split.holdout, pre, "cpu")).numpy()
    test = None if split.test is None else score(net, c, Uint8Images(split.test, pre, "cpu"))
    test_scores = None if test is None else test.numpy()  # (n_test,)
    figures = calibrate(
        holdout=holdout,
        train=score(net, c, Uint8Images(split.train, pre, "cpu")).numpy(),
        test=test_scores,
        test_labels=split.test_labels,
        R=trained.state.R,
    )
    data = run.data
    return with_class_aucs(figures, test_scores, data.y_test, run.k, data.class_names)


def export_trained(run: Run, trained: Trained, dist: Dist, notes: Notes) -> dict[str, Any]:
    """Calibrates, writes the next version of the model and returns the run's summary."""
    calibration = calibrate_trained(trained, run)
    version, version_dir = claim_version(run.spec.models_dir / run.name)
    meta = build_metadata(run, trained, calibration, version, dist.record())
    for warning in calibration_warnings(calibration, meta.default_threshold):
        notes.warn(warning)
    split = run.split
    sample = preprocess.to_unit_tensor(
        split.holdout[:64] if len(split.holdout) else split.train[:64]
    )
    scoring = ScoringModel(trained.pre, trained.state.net, trained.state.c.cpu())
    model_path, rel = export_model(scoring, meta, version_dir, sample)
    auc = "no test split" if calibration.auc is None else f"test AUC {calibration.auc:.3f}"
    notes.say(f"exported {model_path} ({auc})")
    summary = run_summary(model_path, meta, run, trained, rel, dist)
    skipped = [{"file": file, "error": why} for file, why in run.data.skipped]
    return {
        **summary,
        "test_auc_by_class": calibration.class_aucs,
        "test_normal_rates": calibration.test_normal_rates,
        "skipped": skipped,
        "n_skipped": len(skipped),
        "warnings": notes.warnings,
    }


def run_summary(
    model_path: Path,
    meta: ModelMetadata,
    run: Run,
    trained: Trained,
    export_rel_diff: float,
    dist: Dist,
) -> dict[str, Any]:
    """The one JSON object `deepsvdd train` prints: where the model went and how it fared."""
    return {
        "model_path": str(model_path),
        "name": meta.name,
        "version": meta.version,
        "auc": meta.metrics["auc"],
        "train_seconds": round(trained.seconds, 3),
        "seconds_per_epoch": trained.seconds_per_epoch(),
        "objective": run.cfg.objective,
        "radius": trained.state.R,
        "default_threshold": meta.default_threshold,
        "thresholds": meta.thresholds,
        "n_train": meta.dataset.n_train,
        "export_rel_diff": export_rel_diff,
        "device": run.cfg.device,
        "world_size": dist.world,
        "calibration": None if meta.calibration is None else meta.calibration.model_dump(),
        "labelled": meta.training.get("labelled"),
        "threads": torch.get_num_threads(),
    }
