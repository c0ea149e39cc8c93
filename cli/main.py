"""The `deepsvdd` command line: train, evaluate, baselines, inspect, report, serve.

Imports are deferred to each command so that `deepsvdd serve` runs from the serving
install, which has no torch. Every failure the user can fix ends in one line on stderr
and exit status 2; the last line on stdout of a successful command is one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from cli import serving_commands as serving
from cli import training_commands as training
from cli.common import (
    DATASETS,
    UsageError,
    nonneg_int,
    nu_value,
    positive_float,
    positive_int,
)

# Packages of the `train` extra: absent from the serving install (and its container).
TRAINING_ONLY = ("torch", "onnx", "onnxscript", "sklearn", "matplotlib", "tqdm")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--normal-class", required=True, help="class index or name (folder: sub-folder)")
    p.add_argument("--data-dir", type=Path, default=None, help="where the data lie")
    p.add_argument("--download", action="store_true", help="fetch mnist/fashion-mnist/cifar10")
    p.add_argument("--image-size", type=positive_int, default=None)
    p.add_argument("--channels", type=int, choices=(1, 3), default=None)


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
    t.add_argument("--nu", type=nu_value, default=0.1)
    t.add_argument("--pretrain", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--epochs", type=nonneg_int, default=250)
    t.add_argument("--pretrain-epochs", type=nonneg_int, default=350)
    t.add_argument("--lr", type=positive_float, default=1e-4)
    t.add_argument("--lr-milestone", type=nonneg_int, default=None, help="default: 60%% in")
    t.add_argument("--pretrain-lr-milestone", type=nonneg_int, default=None)
    t.add_argument("--batch-size", type=positive_int, default=200)
    t.add_argument("--weight-decay", type=float, default=1e-6)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--net", choices=("mnist", "cifar10", "gtsrb"), default=None)
    t.add_argument("--leaky-slope", type=positive_float, default=0.1)
    t.add_argument("--name", default=None)
    t.add_argument("--models-dir", type=Path, default=Path("models"))
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    t.add_argument("--checkpoint-every", type=positive_int, default=10, help="epochs")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--cache-dir", type=Path, default=None, help="folder: memory-mapped cache of decoded images"
    )
    t.set_defaults(func=training.cmd_train)

    e = sub.add_parser("evaluate", help="score a test split through ONNX Runtime")
    e.add_argument("model", help="model.onnx, a model directory, or a name in --models-dir")
    _add_data_args(e)
    e.add_argument("--models-dir", type=Path, default=Path("models"))
    e.set_defaults(func=training.cmd_evaluate)

    b = sub.add_parser("baselines", help="OC-SVM, KDE and Isolation Forest on PCA (95%%)")
    _add_data_args(b)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=training.cmd_baselines)

    i = sub.add_parser("inspect", help="print a model's metadata as JSON")
    i.add_argument("model")
    i.add_argument("--models-dir", type=Path, default=Path("models"))
    i.set_defaults(func=serving.cmd_inspect)

    r = sub.add_parser("report", help="figures: extremes grid, ROC, score histograms")
    r.add_argument("model")
    _add_data_args(r)
    r.add_argument("--models-dir", type=Path, default=Path("models"))
    r.add_argument("--out", type=Path, default=None, help="default: bench/figures")
    r.set_defaults(func=training.cmd_report)

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--models-dir", type=Path, default=None)
    s.add_argument("--workers", type=positive_int, default=None)
    s.set_defaults(func=serving.cmd_serve)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'fix your input', collected from the modules loaded."""
    errors: list[type[BaseException]] = [UsageError, ValueError, OSError]
    for module, name in (
        ("training.data", "DataError"),
        ("training.checkpoint", "CheckpointError"),
        ("training.export", "ExportError"),
        ("training.distributed", "DistributedError"),
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
