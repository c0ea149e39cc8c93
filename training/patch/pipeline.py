"""`deepsvdd train --model patch`: data, checks, training, memory bank and coreset,
calibration on held-out image scores, and one self-contained ONNX graph."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from modelfile.layout import claim_version
from modelfile.metadata import images_per_distance_run
from training import preprocess
from training.advice import Notes, calibration_warnings
from training.calibration import TrainingFigures, calibrate, with_class_aucs
from training.config import RunSpec, TrainConfig
from training.data import resolve_class
from training.data.rows import ImageArray
from training.export import export_model
from training.patch.bands import Bands
from training.patch.bank import bank_features, greedy_coreset
from training.patch.checks import check_bank, check_image_size, refuse_unsupported
from training.patch.fit import standardise_from, to_batch, train_patch_encoder
from training.patch.metadata import build_patch_metadata
from training.patch.network import STAGE_PATCH, PatchNetConfig, grid_shape
from training.patch.sampling import geometry
from training.patch.scoring import (
    TOP_CELLS,
    PatchScoring,
    PatchViews,
    ScaleScorer,
    Standardise,
    whitening,
)
from training.patch.texture import fit_texture
from training.patch.types import PatchRun, PatchTrained
from training.run import default_name, load_training_data, split_normal

SCORE_BATCH = 16  # images per forward when scoring and building the bank
# Scoring builds an (images x patches x coreset) float32 distance matrix per view: batches
# shrink to keep it within this (16 images of 128 px, 2 of 512 px with the default coreset).
DISTANCE_BYTES = 256 * 2**20
# Folder images are read at this size unless --image-size says otherwise (whole-image models
# read them as 28 or 32 px thumbnails, too small for patches).
FOLDER_IMAGE_SIZE = 128


def load_patch_run(spec: RunSpec, cfg: TrainConfig, notes: Notes) -> PatchRun:
    """Reads the data and checks, before any training, that it suits the patch model."""
    refuse_unsupported(spec, cfg)
    if spec.dataset == "folder" and spec.image_size is None:
        spec = replace(spec, image_size=FOLDER_IMAGE_SIZE)
    data = load_training_data(spec, cfg.seed, notes)
    _, h, w, ch = data.x_train.shape
    check_image_size(h, w, cfg.patch_size)
    k = resolve_class(data, spec.normal_class)
    split = split_normal(data, k, spec.holdout, cfg.seed)
    check_bank(len(split.train), len(split.holdout), h, w, cfg)
    return PatchRun(
        spec=spec,
        cfg=cfg,
        data=data,
        k=k,
        name=spec.name or default_name(spec.dataset, data.class_names[k]),
        split=split,
        net_cfg=PatchNetConfig(ch, cfg.patch_size, leaky_slope=spec.leaky_slope),
        geo=geometry(cfg.patch_size, min(h, w)),
        grid=grid_shape(h, w, STAGE_PATCH),  # the map's: 16-px patches (--patch-size >= 16)
    )


def batches(
    images: ImageArray, pre: Standardise, device: str, size: int = SCORE_BATCH
) -> list[torch.Tensor]:
    rows = np.arange(len(images))
    return [to_batch(images, rows[s : s + size], pre, device) for s in range(0, len(images), size)]


def scoring_batch(images: ImageArray, coreset: int) -> int:
    """Images per scoring forward: SCORE_BATCH, or fewer for large images (DISTANCE_BYTES)."""
    _, h, w, _ = np.asarray(images[:1]).shape
    cells = math.prod(grid_shape(h, w, STAGE_PATCH))
    return images_per_distance_run(cells, coreset, DISTANCE_BYTES, SCORE_BATCH)


def fit_patch_model(run: PatchRun, notes: Notes) -> PatchTrained:
    """Trains the encoder; then, in each view of the map, whitens the normal patches' vectors,
    keeps a greedy k-center coreset of them, and standardises the scores with the held-out
    images'."""
    cfg, train = run.cfg, run.split.train
    pre = standardise_from(train)
    fitted = train_patch_encoder(
        run.net_cfg,
        train,
        pre,
        run.geo,
        cfg.patch_epochs,
        cfg.seed,
        cfg.device,
        run.spec.progress,
        cfg.patch_objective,
    )
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    views = PatchViews(fitted.encoder, Bands(run.net_cfg.channels)).to(cfg.device)
    batched = batches(train, pre.to(cfg.device), cfg.device)
    banks, descriptors = bank_features(views, batched, len(train), gen)
    scorers = []
    for name, bank in zip(views.names(), banks, strict=True):
        mu, w = whitening(bank)  # on the bank's device (CUDA or CPU)
        white = (bank - mu) @ w
        chosen = greedy_coreset(white, cfg.coreset, gen)
        scorers.append(ScaleScorer(name, mu.cpu(), w.cpu(), white[chosen].cpu()))
    views = views.cpu()
    held = standardise_on_holdout(views, scorers, run.split.holdout, pre.cpu())
    term = fit_texture(descriptors, held, gen)
    seconds = time.perf_counter() - started
    kept = min(cfg.coreset, *(len(b) for b in banks))
    notes.say(
        f"coreset: {kept} of {len(banks[-1])} normal patch vectors in each view "
        f"({', '.join(views.names())}) in {seconds:.1f} s"
    )
    top = min(TOP_CELLS, run.grid[0] * run.grid[1])
    scoring = PatchScoring(pre.cpu(), views, scorers, term, top_cells=top)
    return PatchTrained(scoring.eval(), fitted, kept, len(banks[-1]), round(seconds, 3))


@torch.no_grad()
def standardise_on_holdout(
    views: PatchViews, scorers: list[ScaleScorer], holdout: ImageArray, pre: Standardise
) -> torch.Tensor:
    """Standardises each view's scores with the median and the standard deviation of the
    held-out normal images' patch distances in it; returns their texture descriptors."""
    parts: list[list[torch.Tensor]] = [[] for _ in scorers]
    descriptors = []
    size = scoring_batch(holdout, max(len(s.bank) for s in scorers))
    for x in batches(holdout, pre, "cpu", size):
        grids, descriptor = views.read(x)
        descriptors.append(descriptor)
        for i, (scorer, v) in enumerate(zip(scorers, grids, strict=True)):
            parts[i].append(scorer.distances(v).flatten())
    for scorer, chunks in zip(scorers, parts, strict=True):
        d = torch.cat(chunks).double()
        scorer.standardise(float(d.median()), float(d.std()) if len(d) > 1 else 0.0)
    return torch.cat(descriptors)


@torch.no_grad()
def image_scores(scoring: PatchScoring, images: ImageArray) -> np.ndarray:
    """The exported module's image scores, in PyTorch on the CPU."""
    if len(images) == 0:
        return np.empty(0, dtype=np.float32)
    size = scoring_batch(images, max(len(s.bank) for s in scoring.scale_scorers()))
    out = [
        scoring(preprocess.to_unit_tensor(np.asarray(images[s : s + size])))[0]
        for s in range(0, len(images), size)
    ]
    return torch.cat(out).numpy()


def calibrate_patch(run: PatchRun, trained: PatchTrained) -> TrainingFigures:
    """Thresholds from the held-out normal images' image scores, as for image models."""
    split, scoring = run.split, trained.scoring
    test = None if split.test is None else image_scores(scoring, split.test)
    figures = calibrate(
        holdout=image_scores(scoring, split.holdout),
        train=image_scores(scoring, split.train),
        test=test,
        test_labels=split.test_labels,
        R=None,
    )
    return with_class_aucs(figures, test, run.data.y_test, run.k, run.data.class_names)


def train_patch_and_export(spec: RunSpec, cfg: TrainConfig) -> dict[str, Any]:
    """The patch run from data to an exported model; returns the summary `train` prints."""
    started = time.perf_counter()
    notes = Notes(status=spec.progress)
    run = load_patch_run(spec, cfg, notes)
    h, w = run.grid
    notes.say(
        f"training a patch model on {len(run.split.train)} normal images (a {h}x{w} map of "
        f"16-px patches, with {cfg.patch_size}-px ones around them); thresholds from "
        f"{len(run.split.holdout)} held out"
    )
    trained = fit_patch_model(run, notes)
    calibration = calibrate_patch(run, trained)
    version, version_dir = claim_version(spec.models_dir / run.name)
    meta = build_patch_metadata(run, trained, calibration, version)
    for warning in calibration_warnings(calibration, meta.default_threshold, meta.kind):
        notes.warn(warning)
    # The export check runs the graph in PyTorch and ONNX Runtime: a few images, fewer large.
    checked = min(8, scoring_batch(run.split.holdout, cfg.coreset))
    sample = preprocess.to_unit_tensor(np.asarray(run.split.holdout[:checked]))
    path, rel = export_model(trained.scoring, meta, version_dir, sample)
    auc = "no test split" if calibration.auc is None else f"test AUC {calibration.auc:.3f}"
    notes.say(f"exported {path} ({auc})")
    return {
        "model_path": str(path),
        "name": meta.name,
        "version": meta.version,
        "kind": meta.kind,
        "auc": calibration.auc,
        "test_auc_by_class": calibration.class_aucs,
        "test_normal_rates": calibration.test_normal_rates,
        "train_seconds": round(trained.fit.seconds, 3),
        "coreset_seconds": trained.coreset_seconds,
        "objective": meta.objective,
        "radius": None,
        "default_threshold": meta.default_threshold,
        "thresholds": meta.thresholds,
        "n_train": meta.dataset.n_train,
        "export_rel_diff": rel,
        "file_bytes": path.stat().st_size,
        "patch": None if meta.patch is None else meta.patch.model_dump(),
        "device": cfg.device,
        "calibration": None if meta.calibration is None else meta.calibration.model_dump(),
        "threads": torch.get_num_threads(),
        "skipped": [{"file": file, "error": why} for file, why in run.data.skipped],
        "warnings": notes.warnings,
        "total_seconds": round(time.perf_counter() - started, 3),
    }
