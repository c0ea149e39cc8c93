"""The training-side commands: train, evaluate, baselines, report. They need the `train` extra."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import UsageError, emit


def cmd_train(args: argparse.Namespace) -> None:
    from training.deepsvdd import TrainConfig
    from training.pipeline import RunSpec, train_and_export

    cfg = TrainConfig(
        objective=args.objective,
        nu=args.nu,
        epochs=args.epochs,
        lr=args.lr,
        lr_milestone=args.lr_milestone,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        pretrain=args.pretrain,
        pretrain_epochs=args.pretrain_epochs,
        pretrain_lr_milestone=args.pretrain_lr_milestone,
        seed=args.seed,
        device=args.device,
    )
    spec = RunSpec(
        dataset=args.dataset,
        normal_class=args.normal_class,
        data_dir=args.data_dir,
        download=args.download,
        image_size=args.image_size,
        channels=args.channels,
        arch=args.net,
        leaky_slope=args.leaky_slope,
        name=args.name,
        models_dir=args.models_dir,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        progress=not args.quiet,
    )
    if args.name is not None:
        from modelfile.metadata import NAME_PATTERN, is_valid_name

        if not is_valid_name(args.name):
            raise UsageError(f"--name {args.name!r} must match {NAME_PATTERN}")
    emit(train_and_export(spec, cfg))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from training.evaluate import evaluate

    emit(
        evaluate(
            args.model,
            args.dataset,
            args.normal_class,
            args.data_dir,
            download=args.download,
            models_dir=args.models_dir,
        )
    )


def cmd_baselines(args: argparse.Namespace) -> None:
    from training.baselines import run_for_dataset

    emit(
        run_for_dataset(
            args.dataset,
            args.normal_class,
            args.data_dir,
            download=args.download,
            image_size=args.image_size,
            channels=args.channels,
            seed=args.seed,
        )
    )


def cmd_report(args: argparse.Namespace) -> None:
    from training.evaluate import score_test_split
    from training.report import write_report

    scored = score_test_split(
        args.model,
        args.dataset,
        args.normal_class,
        args.data_dir,
        download=args.download,
        models_dir=args.models_dir,
    )
    out = args.out or Path("bench") / "figures"
    meta = scored.meta
    paths = write_report(
        scored.images, scored.scores, scored.labels, meta.thresholds, out, name=meta.name
    )
    emit({"model_path": str(scored.path), **{kind: str(p) for kind, p in paths.items()}})
