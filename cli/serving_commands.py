"""The serving-side commands: serve, inspect. They run from the serving install (no torch)."""

from __future__ import annotations

import argparse
import json

from cli.common import UsageError


def cmd_inspect(args: argparse.Namespace) -> None:
    from modelfile.layout import open_model, resolve_model_path

    _, meta = open_model(resolve_model_path(args.model, args.models_dir))
    print(json.dumps(meta.model_dump(mode="json"), indent=2))


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
