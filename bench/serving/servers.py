"""The servers bench/serving measures: this service on a repository of one model, the plain
FastAPI endpoint and BentoML, each started, probed until ready and stopped."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness.processes import free_port, stop_process
from bench.serving import peer
from bench.serving.loads import BATCH
from service.cpus import available_cpus
from service.settings import CPU_PROVIDER, MAX_AUTO_WORKERS

SERVING_DIR = Path(__file__).resolve().parent
REPO = SERVING_DIR.parents[1]


@dataclass(frozen=True)
class Server:
    """A server process to start: its command, environment, base URL and readiness probe."""

    label: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    base: str
    probe: str


@contextlib.contextmanager
def server(target: Server, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Starts `target`, waits until its probe answers 200, and stops it with SIGTERM."""
    probe = target.base + target.probe
    with open(log, "wb") as out:
        process = subprocess.Popen(
            target.command,
            cwd=target.cwd,
            env={**os.environ, **target.env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            end = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{target.label} exited early: {log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(probe, timeout=2).status_code == 200:
                        break
                if time.monotonic() > end:
                    raise RuntimeError(f"{probe} did not answer 200 within 60 s")
                time.sleep(0.1)
            yield process
        finally:
            stop_process(process)


def service_workers(extra: dict[str, str]) -> int:
    """The service's worker count: DEEPSVDD_WORKERS as given, else its auto default."""
    asked = extra.get("DEEPSVDD_WORKERS", "auto").strip().lower()
    if asked.isdigit() and int(asked) > 0:
        return int(asked)
    return min(available_cpus(), MAX_AUTO_WORKERS)


def service_extra(args: argparse.Namespace) -> dict[str, str]:
    """--service-env as a dict; exits naming the first item that is not KEY=VALUE."""
    bad = [item for item in args.service_env if "=" not in item]
    if bad:
        sys.exit(f"--service-env {bad[0]!r} is not KEY=VALUE")
    return dict(item.split("=", 1) for item in args.service_env)


def model_repository(model: Path, models_dir: Path) -> Path:
    """`models_dir` holding only `model`, linked in at its own name and version."""
    name, version = model.parent.parent.name, model.parent.name
    (models_dir / name / version).mkdir(parents=True)
    (models_dir / name / version / "model.onnx").symlink_to(model)
    return models_dir


def service_server(
    label: str, models_dir: Path, extra: dict[str, str], args: argparse.Namespace
) -> Server:
    """`python -m service` on `models_dir`, CPU only, on a free port, with `extra` added."""
    port = free_port()
    return Server(
        label,
        [sys.executable, "-m", "service"],
        args.service_dir.resolve(),
        {
            "DEEPSVDD_MODELS_DIR": str(models_dir),
            "DEEPSVDD_PROVIDERS": CPU_PROVIDER,
            "DEEPSVDD_PORT": str(port),
            **extra,
        },
        f"http://127.0.0.1:{port}",
        "/health/ready",
    )


def servers_for(
    model: Path, tmp: Path, args: argparse.Namespace
) -> tuple[list[Server], dict[str, str]]:
    """This service on a repository holding only `model`, the plain endpoint and the peer;
    and a line on how each was set up."""
    extra = service_extra(args)
    models_dir = model_repository(model, tmp / "models")
    workers = service_workers(extra)
    threads = int(extra.get("DEEPSVDD_INTRA_OP_THREADS", "0")) or max(
        1, available_cpus() // workers
    )
    plain_port, peer_port = free_port(), free_port()
    servers = [
        service_server("service", models_dir, extra, args),
        Server(
            "plain",
            [
                *(sys.executable, "-m", "uvicorn", "--app-dir", str(SERVING_DIR), "plain_app:app"),
                *("--host", "127.0.0.1", "--port", str(plain_port), "--workers", "1"),
            ],
            REPO,
            {"PLAIN_APP_MODEL": str(model)},
            f"http://127.0.0.1:{plain_port}",
            "/openapi.json",
        ),
    ]
    setups = {
        "service": f"{workers} worker(s) of {threads} ONNX Runtime thread(s)",
        "plain": "`uvicorn --app-dir bench/serving plain_app:app --workers 1`",
    }
    if args.peer == "bentoml":
        python = peer.peer_python(args.peer_venv)
        servers.append(
            Server(
                "peer",
                peer.bentoml_command(python, peer_port),
                SERVING_DIR,
                peer.bentoml_env(model, workers, threads, tmp / "bentoml-home"),
                f"http://127.0.0.1:{peer_port}",
                "/readyz",
            )
        )
        setups["peer"] = (
            f"`bentoml serve peer_bento:Scorer` ({peer.BENTOML}), {workers} worker(s) of "
            f"{threads} ONNX Runtime thread(s), adaptive batching up to {BATCH} images and "
            "1000 ms (`PEER_MAX_LATENCY_MS`)"
        )
    return servers, setups
