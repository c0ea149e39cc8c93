"""The `deepsvdd` command line: train, evaluate, baselines, inspect, report, serve, score,
calibrate.

Imports are deferred to each command so that `deepsvdd serve` runs from the serving
install, which has no torch. Every failure the user can fix ends in one line on stderr
and exit status 2; the last line on stdout of a successful command is one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from cli import serving_commands as serving
from cli import training_commands as training
from cli.common import (
    UsageError,
    comma_list,
    nonneg_int,
    nu_value,
    positive_float,
    positive_int,
    rate,
)
from modelfile.metadata import DECODE_POLICIES
from training.config import (
    DATASETS,
    DEVICES,
    MODELS,
    NETS,
    OBJECTIVES,
    PATCH_OBJECTIVES,
    PRECISIONS,
    PRETRAIN_TASKS,
    TRANSFORMS,
    RunSpec,
    TrainConfig,
)

# Packages of the `train` extra: absent from the serving install (and its container).
TRAINING_ONLY = ("torch", "onnx", "onnxscript", "sklearn", "matplotlib", "tqdm")


def _add_data_args(p: argparse.ArgumentParser, from_model: bool = False) -> None:
    """Data arguments; `from_model`: dataset and class default to what the model records."""
    hint = " (default: the model's)" if from_model else ""
    p.add_argument("--dataset", required=not from_model, choices=DATASETS, help=hint or None)
    p.add_argument(
        "--normal-class",
        required=not from_model,
        help=f"class index or name (folder: sub-folder){hint}",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="where the data lie")
    p.add_argument("--download", action="store_true", help="fetch mnist/fashion-mnist/cifar10")
    p.add_argument("--image-size", type=positive_int, default=None)
    p.add_argument("--channels", type=int, choices=(1, 3), default=None)


def _add_model_check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-other-class",
        "--force",
        dest="allow_other_class",
        action="store_true",
        help="evaluate on a dataset or normal class other than the model's",
    )
    p.add_argument(
        "--threshold", default=None, help="a threshold name (q0.99, max...) or a score value"
    )


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line (no usage block), exit status 2. No prefix matching:
    `--model patch` must never be read as `--models-dir patch`, so an abbreviation is an error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


# The command line trains on the GPU when PyTorch sees one; the library's default stays the CPU.
CLI_DEFAULTS: dict[str, Any] = {"device": "auto"}


def _setting(p: argparse.ArgumentParser, owner: type, field: str, *flags: str, **kw: Any) -> None:
    """An option for `owner`'s `field` (--field-name unless `flags`), the owner's default."""
    names = flags or ("--" + field.replace("_", "-"),)
    p.add_argument(*names, dest=field, default=CLI_DEFAULTS.get(field, getattr(owner, field)), **kw)


def _add_train_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    """`train`: every hyper-parameter of TrainConfig but the warm-up, with its default."""
    t = sub.add_parser("train", help="train a model and export it to the model repository")
    _add_data_args(t)
    _setting(
        t,
        TrainConfig,
        "model",
        choices=MODELS,
        help="image: whole-image Deep SVDD (the paper); patch: patch-level, with an anomaly map",
    )
    _setting(t, TrainConfig, "patch_size", type=positive_int, help="patch: px, a multiple of 4")
    _setting(
        t,
        TrainConfig,
        "patch_epochs",
        type=nonneg_int,
        help="patch: passes over the images (0: the random encoder, BatchNorm fitted)",
    )
    _setting(
        t,
        TrainConfig,
        "patch_objective",
        choices=PATCH_OBJECTIVES,
        help="patch: what those passes train the encoder for: synthetic anomalies made from "
        "the normal images, or Patch SVDD's relative position",
    )
    _setting(t, TrainConfig, "coreset", type=positive_int, help="patch: normal patch features kept")
    _setting(t, TrainConfig, "objective", choices=OBJECTIVES)
    _setting(t, TrainConfig, "nu", type=nu_value)
    _setting(t, TrainConfig, "pretrain", action=argparse.BooleanOptionalAction)
    _setting(t, TrainConfig, "epochs", type=nonneg_int)
    _setting(t, TrainConfig, "pretrain_epochs", type=nonneg_int)
    _setting(t, TrainConfig, "lr", type=positive_float)
    _setting(t, TrainConfig, "lr_milestone", type=nonneg_int, help="default: 60%% in")
    _setting(t, TrainConfig, "pretrain_lr_milestone", type=nonneg_int)
    _setting(
        t,
        TrainConfig,
        "pretrain_task",
        choices=PRETRAIN_TASKS,
        help="the DCAE (the paper), or predicting the transformation of --transforms "
        "(quarter turns when that is identity)",
    )
    _setting(
        t, TrainConfig, "pretrain_lr", type=positive_float, help="default: --lr; rotation 1e-3"
    )
    _setting(
        t,
        TrainConfig,
        "transforms",
        choices=TRANSFORMS,
        help="a centre per transformation, the score summed over them (default identity: "
        "the paper's one centre)",
    )
    _setting(t, TrainConfig, "batch_size", type=positive_int)
    _setting(
        t,
        TrainConfig,
        "ensemble",
        type=positive_int,
        help="K networks (seeds seed .. seed+K-1) in one graph, each score divided by its "
        "held-out median (default 1)",
    )
    _setting(
        t,
        TrainConfig,
        "members",
        type=comma_list,
        help="ensemble members of other kinds, PRETRAINING:TRANSFORMS[,...], e.g. "
        "dcae:identity,rotation:rotations (PRETRAINING dcae, rotation or none)",
    )
    _setting(t, TrainConfig, "weight_decay", type=float)
    _setting(t, TrainConfig, "seed", type=int)
    _setting(t, TrainConfig, "device", choices=DEVICES)
    _setting(
        t,
        TrainConfig,
        "precision",
        choices=PRECISIONS,
        help="the forward passes' arithmetic: fp32 (default), bf16 autocast, or auto: bf16 "
        "where the device computes it natively (c and the distances stay fp32)",
    )
    _setting(
        t,
        TrainConfig,
        "channels_last",
        action=argparse.BooleanOptionalAction,
        help="channels-last memory layout (default: on the CPU, not on CUDA)",
    )
    _setting(t, RunSpec, "arch", "--net", choices=NETS)
    _setting(t, RunSpec, "leaky_slope", type=positive_float)
    _setting(t, RunSpec, "name")
    _setting(t, RunSpec, "models_dir", type=Path)
    _setting(t, RunSpec, "resume", action="store_true", help="continue from the last checkpoint")
    _setting(t, RunSpec, "checkpoint_every", type=positive_int, help="epochs")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--anomaly-classes",
        default=None,
        help="Deep SAD: classes whose training images are labelled anomalies, A[,B] "
        "(folder: sub-folders of train/; npz: a label such as -1)",
    )
    _setting(
        t,
        RunSpec,
        "labelled_fraction",
        type=positive_float,
        help="share of each anomaly class's training images used as labelled (default 1)",
    )
    _setting(t, RunSpec, "strict", action="store_true", help="stop at the first unreadable image")
    t.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    _setting(
        t, RunSpec, "cache_dir", type=Path, help="folder: memory-mapped cache of decoded images"
    )
    _setting(
        t,
        RunSpec,
        "decode",
        choices=DECODE_POLICIES,
        help="folder JPEGs: reduced (DCT-scaled by libjpeg to at least twice the model's "
        "input, the default) or full (every pixel); the model records it and serving decodes "
        "its images the same way",
    )
    t.set_defaults(func=training.cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deepsvdd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _add_train_command(sub)

    e = sub.add_parser("evaluate", help="score a test split through ONNX Runtime")
    e.add_argument("model", help="model.onnx, a model directory, or a name in --models-dir")
    _add_data_args(e, from_model=True)
    e.add_argument("--models-dir", type=Path, default=Path("models"))
    _add_model_check_args(e)
    e.set_defaults(func=training.cmd_evaluate)

    b = sub.add_parser("baselines", help="OC-SVM, KDE and Isolation Forest on PCA (95%%)")
    _add_data_args(b)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=training.cmd_baselines)

    i = sub.add_parser("inspect", help="print a model's metadata as JSON")
    i.add_argument("model")
    i.add_argument("--models-dir", type=Path, default=Path("models"))
    i.add_argument(
        "--full",
        action="store_true",
        help="every coordinate of the centre and every score of the drift reference",
    )
    i.set_defaults(func=serving.cmd_inspect)

    r = sub.add_parser("report", help="figures: extremes grid, ROC, score histograms")
    r.add_argument("model")
    _add_data_args(r, from_model=True)
    r.add_argument("--models-dir", type=Path, default=Path("models"))
    r.add_argument("--out", type=Path, default=None, help="default: <model>/<version>/report")
    _add_model_check_args(r)
    r.set_defaults(func=training.cmd_report)

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--models-dir", type=Path, default=None)
    s.add_argument("--workers", type=positive_int, default=None)
    s.set_defaults(func=serving.cmd_serve)
    _add_offline_commands(sub)
    return parser


def _add_offline_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    """`score` and `calibrate`: the service's decoding and ONNX Runtime path, no server."""
    sc = sub.add_parser("score", help="score image files and folders offline")
    sc.add_argument("model", help="model.onnx, a model directory, or a name in --models-dir")
    sc.add_argument("paths", nargs="+", metavar="PATH", help="files, folders (ray: or URIs)")
    sc.add_argument("--models-dir", type=Path, default=Path("models"))
    sc.add_argument("--version", type=positive_int, default=None, help="default: the latest")
    sc.add_argument("--threshold", default=None, help="a threshold name or a number")
    sc.add_argument(
        "--output", default=None, help="F.csv or F.jsonl (default: stdout); ray: F.parquet"
    )
    sc.add_argument("--batch-size", type=positive_int, default=64)
    sc.add_argument(
        "--maps",
        type=Path,
        default=None,
        metavar="DIR",
        help="write each image's anomaly map over it, <file name>.map.png (local engine)",
    )
    sc.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="ray: Ray Data, Parquet out"
    )
    sc.add_argument("--address", default=None, help="ray: a cluster; default: a local instance")
    sc.add_argument("--actors", type=positive_int, default=1, help="ray: scoring actors")
    sc.set_defaults(func=serving.cmd_score)

    ca = sub.add_parser("calibrate", help="thresholds from your images, as a new model version")
    ca.add_argument("model", help="a model directory or a name in --models-dir")
    ca.add_argument("--normal", type=Path, required=True, help="folder of normal images")
    ca.add_argument("--anomalies", type=Path, default=None, help="folder of anomalous images")
    ca.add_argument("--target-rate", type=rate, default=0.05, help="normal images flagged")
    ca.add_argument("--models-dir", type=Path, default=Path("models"))
    ca.add_argument("--batch-size", type=positive_int, default=64)
    ca.set_defaults(func=serving.cmd_calibrate)


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
