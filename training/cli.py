"""The `deepsvdd` command line: train, evaluate, baselines, inspect, report, serve.

Imports are deferred to each command so that `deepsvdd serve` runs from the serving
install, which has no torch. Every failure the user can fix ends in one line on stderr
and exit status 2; the last line on stdout of a successful command is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

# Packages of the `train` extra: absent from the serving install (and its container).
TRAINING_ONLY = ("torch", "onnx", "onnxscript", "sklearn", "matplotlib", "tqdm")
DATASETS = ("mnist", "fashion-mnist", "cifar10", "gtsrb", "folder", "npz")


class UsageError(Exception):
    """A problem with the user's arguments or data, reported in one line."""


def _checked(
    parse: Callable[[str], float], ok: Callable[[float], bool], rule: str
) -> Callable[[str], Any]:
    """An argparse type: parses with `parse` and refuses values outside `rule`."""
    kind = "an integer" if parse is int else "a number"

    def convert(text: str) -> float:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{value} must be {rule}")
        return value

    return convert


_positive_int = _checked(int, lambda v: v >= 1, ">= 1")
_nonneg_int = _checked(int, lambda v: v >= 0, ">= 0")
_positive_float = _checked(float, lambda v: v > 0, "> 0")
_nu = _checked(float, lambda v: 0.0 < v <= 1.0, "in (0, 1] (nu)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--normal-class", required=True, help="class index or name (folder: sub-folder)")
    p.add_argument("--data-dir", type=Path, default=None, help="where the data lie")
    p.add_argument("--download", action="store_true", help="fetch mnist/fashion-mnist/cifar10")
    p.add_argument("--image-size", type=_positive_int, default=None)
    p.add_argument("--channels", type=int, choices=(1, 3), default=None)


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, default=float))


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
        from service.metadata import NAME_PATTERN, is_valid_name

        if not is_valid_name(args.name):
            raise UsageError(f"--name {args.name!r} must match {NAME_PATTERN}")
    _emit(train_and_export(spec, cfg))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from training.evaluate import evaluate

    _emit(
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
    from training.pipeline import split_normal
    from training.preprocess import apply, fit_preprocess

    data = load_dataset(
        args.dataset,
        args.data_dir,
        download=args.download,
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
    _emit({"dataset": args.dataset, "normal_class": k, **result})


def cmd_inspect(args: argparse.Namespace) -> None:
    from training.evaluate import open_model, resolve_model_path

    _, meta = open_model(resolve_model_path(args.model, args.models_dir))
    print(json.dumps(meta.model_dump(mode="json"), indent=2))


def cmd_report(args: argparse.Namespace) -> None:
    import numpy as np

    from training.data import load_dataset, resolve_class
    from training.evaluate import open_model, ort_scores, resolve_model_path, training_seed
    from training.report import write_report

    path = resolve_model_path(args.model, args.models_dir)
    session, meta = open_model(path)
    data = load_dataset(
        args.dataset,
        args.data_dir,
        download=args.download,
        image_size=meta.input.height,
        channels=meta.input.channels,
        seed=training_seed(meta),
    )
    if data.x_test is None or data.y_test is None:
        raise UsageError(f"dataset {args.dataset!r} has no test split")
    k = resolve_class(data, args.normal_class)
    scores = ort_scores(session, data.x_test)
    labels = (data.y_test != k).astype(np.int64)
    out = args.out or Path("bench") / "figures"
    paths = write_report(data.x_test, scores, labels, meta.thresholds, out, name=meta.name)
    _emit({"model_path": str(path), **{kind: str(p) for kind, p in paths.items()}})


def cmd_serve(args: argparse.Namespace) -> None:
    from service.server import serve
    from service.settings import Settings, describe_error

    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "models_dir": args.models_dir,
            "workers": args.workers,
        }.items()
        if v is not None
    }
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        raise UsageError(f"bad settings: {describe_error(exc)}") from exc
    serve(settings)


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deepsvdd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model and export it to the model repository")
    _add_data_args(t)
    t.add_argument("--objective", choices=("one-class", "soft-boundary"), default="one-class")
    t.add_argument("--nu", type=_nu, default=0.1)
    t.add_argument("--pretrain", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--epochs", type=_nonneg_int, default=250)
    t.add_argument("--pretrain-epochs", type=_nonneg_int, default=350)
    t.add_argument("--lr", type=_positive_float, default=1e-4)
    t.add_argument("--lr-milestone", type=_nonneg_int, default=None, help="default: 60%% in")
    t.add_argument("--pretrain-lr-milestone", type=_nonneg_int, default=None)
    t.add_argument("--batch-size", type=_positive_int, default=200)
    t.add_argument("--weight-decay", type=float, default=1e-6)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--net", choices=("mnist", "cifar10", "gtsrb"), default=None)
    t.add_argument("--leaky-slope", type=_positive_float, default=0.1)
    t.add_argument("--name", default=None)
    t.add_argument("--models-dir", type=Path, default=Path("models"))
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    t.add_argument("--checkpoint-every", type=_positive_int, default=10, help="epochs")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a test split through ONNX Runtime")
    e.add_argument("model", help="model.onnx, a model directory, or a name in --models-dir")
    _add_data_args(e)
    e.add_argument("--models-dir", type=Path, default=Path("models"))
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("baselines", help="OC-SVM, KDE and Isolation Forest on PCA (95%%)")
    _add_data_args(b)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_baselines)

    i = sub.add_parser("inspect", help="print a model's metadata as JSON")
    i.add_argument("model")
    i.add_argument("--models-dir", type=Path, default=Path("models"))
    i.set_defaults(func=cmd_inspect)

    r = sub.add_parser("report", help="figures: extremes grid, ROC, score histograms")
    r.add_argument("model")
    _add_data_args(r)
    r.add_argument("--models-dir", type=Path, default=Path("models"))
    r.add_argument("--out", type=Path, default=None, help="default: bench/figures")
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--models-dir", type=Path, default=None)
    s.add_argument("--workers", type=_positive_int, default=None)
    s.set_defaults(func=cmd_serve)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'fix your input', collected from the modules loaded."""
    errors: list[type[BaseException]] = [UsageError, ValueError, OSError]
    for module, name in (
        ("training.data", "DataError"),
        ("training.checkpoint", "CheckpointError"),
        ("training.export", "ExportError"),
    ):
        mod = sys.modules.get(module)
        if mod is not None:
            errors.append(getattr(mod, name))
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except KeyboardInterrupt:
        print("deepsvdd: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if exc.name not in TRAINING_ONLY:
            raise
        print(
            f"deepsvdd {args.command}: error: needs {exc.name}, which the serving install "
            "leaves out; install the training extra: pip install 'deepsvdd-serve[train]'",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"deepsvdd {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
