"""The serving-side commands: serve, inspect, score, calibrate; all run from the serving
install (no torch)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cli.common import UsageError, emit

if TYPE_CHECKING:
    from service.offline import FileScore
    from service.repository import LoadedModel

SCORE_COLUMNS = ("path", "score", "threshold", "is_anomaly")

_NUMBER_LIST = re.compile(r"\[\s*((?:-?[0-9.eE+-]+,?\s*)+)\]")


def cmd_inspect(args: argparse.Namespace) -> None:
    from modelfile.layout import open_model, resolve_model_path

    _, meta = open_model(resolve_model_path(args.model, args.models_dir))
    shown = meta.model_dump(mode="json")
    if not args.full:
        shown["center"] = summarise_center(meta.center)
    print(compact_json(shown))


def compact_json(value: object) -> str:
    """Indented JSON with every list of numbers on one line."""
    text = json.dumps(value, indent=2)
    return _NUMBER_LIST.sub(lambda m: f"[{', '.join(m.group(1).replace(',', ' ').split())}]", text)


def summarise_center(center: list[float], first: int = 4) -> dict[str, object]:
    """The centre in three lines instead of one per coordinate (`inspect --full` shows all)."""
    return {
        "dim": len(center),
        "norm": math.sqrt(sum(v * v for v in center)),
        "first": center[:first],
        "full": "deepsvdd inspect --full",
    }


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


def _score_paths(
    command: str, model: LoadedModel, paths: list[Path], batch: int
) -> list[FileScore]:
    """Scores the image files under `paths`; each skipped file gets one line on stderr."""
    from service.offline import Progress, find_images, score_files

    files = find_images(paths)
    if not files:
        raise UsageError(f"no image files in {', '.join(str(p) for p in paths)}")
    progress = Progress(sys.stderr, len(files))
    progress.note(f"deepsvdd {command}: {model.name} v{model.version} on {model.provider}")
    results = []
    for result in score_files(model, files, batch, progress):
        if result.error is not None:
            progress.note(f"deepsvdd {command}: skipped {result.path}: {result.error}")
        results.append(result)
    return results


def cmd_score(args: argparse.Namespace) -> None:
    from modelfile.metadata import resolve_threshold
    from service.offline import load, locate

    model = load(locate(args.model, args.models_dir, args.version))
    name, value = resolve_threshold(model.metadata, args.threshold)
    output = args.output
    if output is not None and output.suffix not in (".csv", ".jsonl"):
        raise UsageError(f"--output {output} must end in .csv or .jsonl")
    results = _score_paths(args.command, model, args.paths, args.batch_size)
    scored = [r for r in results if r.score is not None]
    rows = [
        {"path": str(r.path), "score": r.score, "threshold": value, "is_anomaly": r.score > value}
        for r in scored
        if r.score is not None
    ]
    if output is None:
        _write_csv(sys.stdout, rows)
    else:
        with open(output, "w", newline="", encoding="utf-8") as f:
            if output.suffix == ".csv":
                _write_csv(f, rows)
            else:
                f.writelines(json.dumps(row) + "\n" for row in rows)
    emit(
        {
            "model": model.name,
            "version": model.version,
            "threshold": {"name": name, "value": value},
            "files": len(results),
            "scored": len(rows),
            "anomalies": sum(bool(row["is_anomaly"]) for row in rows),
            "skipped": len(results) - len(rows),
            "output": str(output) if output is not None else None,
        }
    )


def _write_csv(out: TextIO, rows: list[dict[str, object]]) -> None:
    writer = csv.DictWriter(out, fieldnames=SCORE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def cmd_calibrate(args: argparse.Namespace) -> None:
    import numpy as np

    from service.calibration import choose, write_new_version
    from service.offline import load, locate

    for option, folder in (("--normal", args.normal), ("--anomalies", args.anomalies)):
        if folder is not None and not folder.is_dir():
            raise UsageError(f"{option} {folder} is not a folder")
    path = locate(args.model, args.models_dir)
    model = load(path)
    normal = _score_paths(args.command, model, [args.normal], args.batch_size)
    anomalies = (
        _score_paths(args.command, model, [args.anomalies], args.batch_size)
        if args.anomalies is not None
        else []
    )
    normal_scores = np.array([r.score for r in normal if r.score is not None])
    anomaly_scores = np.array([r.score for r in anomalies if r.score is not None])
    choices = choose(normal_scores, anomaly_scores, args.target_rate)
    counts = {"n_normal": int(normal_scores.size), "n_anomalies": int(anomaly_scores.size)}
    written, meta = write_new_version(path, model.metadata, choices, counts)
    emit(
        {
            "model": meta.name,
            "version": meta.version,
            "from_version": model.version,
            "model_path": str(written),
            "target_rate": args.target_rate,
            **counts,
            "thresholds": [c.as_dict() for c in choices],
            "default_threshold": meta.default_threshold,
        }
    )
