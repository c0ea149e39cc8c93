"""The training-side commands: train, evaluate, baselines, report. They need the `train` extra."""

from __future__ import annotations

import argparse
import sys

from cli.common import UsageError, emit


def cmd_train(args: argparse.Namespace) -> None:
    if not args.quiet:
        print("deepsvdd train: starting (importing PyTorch)...", file=sys.stderr, flush=True)
    import torch

    from training.config import TrainConfig
    from training.labelled import parse_classes
    from training.pipeline import RunSpec, train_and_export

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.labelled_fraction > 1:
        raise UsageError(f"--labelled-fraction {args.labelled_fraction} must be in (0, 1]")

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
        pretrain_task=args.pretrain_task,
        pretrain_lr=args.pretrain_lr,
        transforms=args.transforms,
        ensemble=args.ensemble,
        members=tuple(m for m in (args.members or "").split(",") if m.strip()),
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
        anomaly_classes=parse_classes(args.anomaly_classes),
        labelled_fraction=args.labelled_fraction,
        strict=args.strict,
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

    result = evaluate(
        args.model,
        args.dataset,
        args.normal_class,
        args.data_dir,
        download=args.download,
        models_dir=args.models_dir,
        allow_other=args.allow_other_class,
        threshold=args.threshold,
    )
    auc = "n/a" if result["auc"] is None else f"{result['auc']:.3f}"
    fpr, tpr = _share(result["false_positive_rate"]), _share(result["true_positive_rate"])
    print(
        f"deepsvdd evaluate: {result['name']} v{result['version']} on {result['dataset']} "
        f"(normal: {result['normal_class']}): AUC {auc}; at {result['threshold']}, "
        f"{fpr} of normal images flagged and {tpr} of anomalies",
        file=sys.stderr,
    )
    emit(result)


def _share(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1%}"


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
    from modelfile.metadata import resolve_threshold
    from training.evaluate import score_test_split
    from training.report import write_report

    scored = score_test_split(
        args.model,
        args.dataset,
        args.normal_class,
        args.data_dir,
        download=args.download,
        models_dir=args.models_dir,
        allow_other=args.allow_other_class,
    )
    meta = scored.meta
    thresholds = meta.thresholds
    if args.threshold is not None:
        name, value = resolve_threshold(meta, args.threshold)
        thresholds = {name: value}
    out = args.out if args.out is not None else scored.path.parent / "report"
    paths = write_report(
        scored.images, scored.scores, scored.labels, thresholds, out, name=meta.name
    )
    print(f"deepsvdd report: wrote {len(paths)} figures to {out}", file=sys.stderr)
    emit({"model_path": str(scored.path), **{kind: str(p) for kind, p in paths.items()}})
