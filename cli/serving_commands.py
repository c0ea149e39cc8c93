"""The serving-side commands: serve, inspect. They run from the serving install (no torch)."""

from __future__ import annotations

import argparse
import json
import math
import re

from cli.common import UsageError

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
