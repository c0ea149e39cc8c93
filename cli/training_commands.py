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
        cache_dir=args.cache_dir,
    )
    if args.name is not None:
        from modelfile.metadata import NAME_PATTERN, is_valid_name

        if not is_valid_name(args.name):
            raise UsageError(f"--name {args.name!r} must match {NAME_PATTERN}")
    summary = train_and_export(spec, cfg)
    if summary is not None:  # under torchrun, rank 0 alone reports
        emit(summary)


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
    from training.baselines import run_baselines
    from training.data import load_dataset, resolve_class
    from training.data.download import download_missing
    from training.pipeline import split_normal
    from training.preprocess import apply, fit_preprocess

    if args.download:
        download_missing(args.dataset, args.data_dir)
    data = load_dataset(
        args.dataset,
        args.data_dir,
        image_size=args.image_size,
        channels=args.channels,
        seed=args.seed,
    )
    k = resolve_class(data, args.normal_class)
    split = split_normal(data, k, 0.1, args.seed)
    if split.test is None or split.test_labels is None:
        raise UsageError(f"dataset {args.dataset!r} has no test split")
    pre = fit_preprocess(split.train)
    x_train = apply(pre, split.train).flatten(1).numpy()
    x_test = apply(pre, split.test).flatten(1).numpy()
    result = run_baselines(x_train, x_test, split.test_labels, seed=args.seed)
    emit({"dataset": args.dataset, "normal_class": k, **result})


def cmd_report(args: argparse.Namespace) -> None:
    import numpy as np

    from training.data import load_dataset, resolve_class
    from training.data.download import download_missing
    from training.evaluate import open_model, ort_scores, resolve_model_path, training_seed
    from training.report import write_report

    path = resolve_model_path(args.model, args.models_dir)
    session, meta = open_model(path)
    if args.download:
        download_missing(args.dataset, args.data_dir)
    data = load_dataset(
        args.dataset,
        args.data_dir,
        image_size=meta.input.height,
        channels=meta.input.channels,
        seed=training_seed(meta),
    )
    if data.x_test is None or data.y_test is None:
        raise UsageError(f"dataset {args.dataset!r} has no test split")
    k = resolve_class(data, args.normal_class)
    x_test = np.asarray(data.x_test)
    scores = ort_scores(session, x_test)
    labels = (data.y_test != k).astype(np.int64)
    out = args.out or Path("bench") / "figures"
    paths = write_report(x_test, scores, labels, meta.thresholds, out, name=meta.name)
    emit({"model_path": str(path), **{kind: str(p) for kind, p in paths.items()}})
