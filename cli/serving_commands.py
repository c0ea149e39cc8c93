"""The serving-side commands: serve, inspect, score, calibrate; all run from the serving
install (no torch). The offline ones print what `service.offline` computes."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cli.common import UsageError, emit

if TYPE_CHECKING:
    import numpy as np

    from service.offline.score import FileScore
    from service.repository import LoadedModel
    from service.settings import Settings

SCORE_COLUMNS = ("path", "score", "threshold", "is_anomaly")

_NUMBER_LIST = re.compile(r"\[\s*((?:-?[0-9.eE+-]+,?\s*)+)\]")


def cmd_inspect(args: argparse.Namespace) -> None:
    from service.offline.inspect import describe

    print(compact_json(describe(args.model, args.models_dir, args.full)))


def compact_json(value: object) -> str:
    """Indented JSON with every list of numbers on one line."""
    text = json.dumps(value, indent=2)
    return _NUMBER_LIST.sub(lambda m: f"[{', '.join(m.group(1).replace(',', ' ').split())}]", text)


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


def _offline_settings() -> Settings:
    """The `DEEPSVDD_*` settings the offline commands share with the service."""
    from service.offline.score import OfflineSettings
    from service.settings import describe_error

    try:
        return OfflineSettings()
    except ValueError as exc:
        raise UsageError(f"bad settings: {describe_error(exc)}") from exc


def _score_paths(
    command: str,
    model: LoadedModel,
    paths: list[Path],
    batch: int,
    settings: Settings,
    maps: bool = False,
) -> list[FileScore]:
    """Scores the image files under `paths`, with `maps` their anomaly maps too; each skipped
    file gets one line on stderr."""
    from service.offline.score import Progress, find_images, score_files

    files = find_images(paths)
    if not files:
        raise UsageError(f"no image files in {', '.join(str(p) for p in paths)}")
    progress = Progress(sys.stderr, len(files))
    progress.note(f"deepsvdd {command}: {model.name} v{model.version} on {model.provider}")
    results = []
    for result in score_files(model, files, settings.max_pixels, batch, progress, maps):
        if result.error is not None:
            progress.note(f"deepsvdd {command}: skipped {result.path}: {result.error}")
        results.append(result)
    return results


def cmd_score(args: argparse.Namespace) -> None:
    if args.engine == "ray":
        _score_on_ray(args)
        return
    if args.address is not None or args.actors != 1:
        raise UsageError("--address and --actors need --engine ray")
    if args.maps is not None and args.maps.exists() and not args.maps.is_dir():
        raise UsageError(f"--maps {args.maps} is not a folder")
    from modelfile.metadata import resolve_threshold
    from service.offline.score import load, locate

    settings = _offline_settings()
    model = load(locate(args.model, args.models_dir, args.version), settings)
    name, value = resolve_threshold(model.metadata, args.threshold)
    output = Path(args.output) if args.output is not None else None
    if output is not None and output.suffix not in (".csv", ".jsonl"):
        raise UsageError(f"--output {output} must end in .csv or .jsonl")
    paths = [Path(p) for p in args.paths]
    maps = args.maps is not None
    if args.maps is not None:
        args.maps.mkdir(parents=True, exist_ok=True)
    results = _score_paths(args.command, model, paths, args.batch_size, settings, maps)
    scored = [r for r in results if r.score is not None]
    rows = [
        {"path": str(r.path), "score": r.score, "threshold": value, "is_anomaly": r.score > value}
        for r in scored
        if r.score is not None
    ]
    if args.maps is not None:
        _write_maps(args.maps, scored, rows)
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
            "maps": str(args.maps) if args.maps is not None else None,
        }
    )


def _write_maps(folder: Path, scored: list[FileScore], rows: list[dict[str, object]]) -> None:
    """Each scored image's map PNG in `folder`, named after its file; its row names it."""
    from modelfile.layout import write_atomic
    from service.offline.maps import map_names

    for result, row, name in zip(scored, rows, map_names([r.path for r in scored]), strict=True):
        assert result.png is not None
        write_atomic(folder / name, result.png)
        row["map"] = str(folder / name)


def _score_on_ray(args: argparse.Namespace) -> None:
    """`--engine ray`: the same model, threshold and pixel path, run by Ray Data into Parquet."""
    from modelfile.layout import open_model
    from modelfile.metadata import resolve_threshold
    from service.offline import ray_engine
    from service.offline.score import locate

    if args.maps is not None:
        raise UsageError("--maps needs --engine local")
    if args.output is None or not args.output.rstrip("/").endswith(".parquet"):
        raise UsageError("--engine ray writes Parquet: name it with --output F.parquet")
    settings = _offline_settings()
    path = locate(args.model, args.models_dir, args.version)
    _, meta = open_model(path)
    name, value = resolve_threshold(meta, args.threshold)
    job = ray_engine.RayJob(
        path, args.paths, args.output, value, args.actors, args.batch_size, args.address
    )
    try:
        summary = ray_engine.run(job, settings)
    except ray_engine.RayEngineError as exc:
        raise UsageError(str(exc)) from exc
    emit(
        {
            "model": meta.name,
            "version": meta.version,
            "threshold": {"name": name, "value": value},
            "engine": "ray",
            "actors": args.actors,
            "gpus_per_actor": summary.gpus_per_actor,
            "files": summary.files,
            "scored": summary.scored,
            "anomalies": summary.anomalies,
            "skipped": summary.files - summary.scored,
            "output": args.output,
        }
    )


def _write_csv(out: TextIO, rows: list[dict[str, object]]) -> None:
    columns = (*SCORE_COLUMNS, "map") if rows and "map" in rows[0] else SCORE_COLUMNS
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _folder_scores(
    args: argparse.Namespace, model: LoadedModel, folder: Path, settings: Settings
) -> np.ndarray:
    """The scores of the image files under `folder` that could be read."""
    import numpy as np

    results = _score_paths(args.command, model, [folder], args.batch_size, settings)
    return np.array([r.score for r in results if r.score is not None])


def cmd_calibrate(args: argparse.Namespace) -> None:
    import numpy as np

    from service.offline.calibrate import user_thresholds, write_new_version
    from service.offline.score import load, locate

    for option, folder in (("--normal", args.normal), ("--anomalies", args.anomalies)):
        if folder is not None and not folder.is_dir():
            raise UsageError(f"{option} {folder} is not a folder")
    settings = _offline_settings()
    path = locate(args.model, args.models_dir)
    model = load(path, settings)
    normal = _folder_scores(args, model, args.normal, settings)
    anomalies = (
        _folder_scores(args, model, args.anomalies, settings)
        if args.anomalies is not None
        else np.array([])
    )
    chosen = user_thresholds(normal, anomalies, args.target_rate)
    written, meta = write_new_version(path, model.metadata, chosen)
    emit(
        {
            "model": meta.name,
            "version": meta.version,
            "from_version": model.version,
            "model_path": str(written),
            "target_rate": args.target_rate,
            **chosen.counts(),
            "thresholds": [c.as_dict() for c in chosen.choices],
            "default_threshold": meta.default_threshold,
        }
    )
