"""The training-side commands: train, evaluate, baselines, report. They need the `train` extra."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from cli.common import UsageError, emit
from training.config import RunSpec, TrainConfig


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The `train` arguments named after TrainConfig's fields, as a config."""
    given = vars(args)
    return TrainConfig.from_overrides(
        {f.name: given[f.name] for f in fields(TrainConfig) if f.name in given}
    )


def run_spec(args: argparse.Namespace, anomaly_classes: tuple[str, ...]) -> RunSpec:
    """What the `train` arguments ask to train on, and where the model goes."""
    return RunSpec(
        dataset=args.dataset,
        normal_class=args.normal_class,
        data_dir=args.data_dir,
        download=args.download,
        image_size=args.image_size,
        channels=args.channels,
        arch=args.arch,
        leaky_slope=args.leaky_slope,
        name=args.name,
        models_dir=args.models_dir,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        progress=not args.quiet,
        anomaly_classes=anomaly_classes,
        labelled_fraction=args.labelled_fraction,
        strict=args.strict,
        cache_dir=args.cache_dir,
        decode=args.decode,
    )


def cmd_train(args: argparse.Namespace) -> None:
    if not args.quiet:
        print("deepsvdd train: starting (importing PyTorch)...", file=sys.stderr, flush=True)
    import torch

    from training.labelled import parse_classes
    from training.pipeline import train_and_export

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.labelled_fraction > 1:
        raise UsageError(f"--labelled-fraction {args.labelled_fraction} must be in (0, 1]")
    cfg = train_config(args)
    spec = run_spec(args, parse_classes(args.anomaly_classes))
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
