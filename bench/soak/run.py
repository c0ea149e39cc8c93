"""Soak: mixed traffic through haproxy to two replicas under rolling restarts and reloads.

Client threads send the mixed traffic of bench/harness/traffic.py (good and corrupt images,
bodies over the limit, wrong types, unknown models, reads, cut uploads) through haproxy to
two replicas of `python -m service` (two workers each); every `--restart-every` minutes
both replicas are restarted in turn (SIGTERM: drain, exit, start, ready again), every
`--reload-every` minutes each gets `POST /admin/reload`. The RSS, open files and threads of
each replica (summed over its supervisor and workers) are read from /proc every few
seconds. A lost request is one without an answer, or with a 5xx or a status its kind never
gets. Writes soak.json, soak.md and soak.png (bench/soak/report.py). Run from the
repository root: `.venv/bin/python -m bench.soak --help`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness.balancer import Balancer, balancing
from bench.harness.processes import ROOT, free_port
from bench.harness.traffic import MIX, Traffic, merge, mixed_traffic
from bench.soak.replicas import Replica
from bench.soak.report import write_report

OUT = Path(__file__).resolve().parent
MAX_BODY_BYTES = 256 * 1024
DRAIN_S = 3
# The traffic's own reloads are left out: reloads come on their schedule, to each replica.
SOAK_MIX = {kind: weight for kind, weight in MIX.items() if kind != "reload"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="of traffic in all")
    parser.add_argument("--restart-every", type=float, default=5.0, help="minutes")
    parser.add_argument("--reload-every", type=float, default=2.0, help="minutes")
    parser.add_argument(
        "--warmup-minutes", type=float, default=None, help="left out of the fits (default: 1/6)"
    )
    parser.add_argument("--clients", type=int, default=3, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="per replica")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args()
    if args.warmup_minutes is None:
        args.warmup_minutes = args.minutes / 6
    return args


class Soak:
    """The run's clock, its schedule of restarts and reloads, and what it saw."""

    def __init__(self, args: argparse.Namespace, replicas: list[Replica], balancer: Balancer):
        self.args = args
        self.replicas = replicas
        self.balancer = balancer
        self.began = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.done = threading.Event()
        # Replicas between SIGTERM and back in haproxy: their samples are not steady.
        self.restarting: set[str] = set()

    def now(self) -> float:
        return time.monotonic() - self.began

    def event(self, kind: str, replica: str, began: float, **details: Any) -> None:
        """Records what happened to `replica` from `began` (seconds into the soak) to now."""
        seconds = round(self.now() - began, 1)
        self.events.append(
            {"t": round(began, 2), "kind": kind, "replica": replica, "seconds": seconds, **details}
        )
        print(f"{began / 60:6.2f} min  {kind} {replica} {details} ({seconds} s)", flush=True)

    def watch(self) -> None:
        """Samples every replica every `--interval` seconds until the soak ends."""
        while not self.done.is_set():
            for replica in self.replicas:
                found = replica.sample()
                if found is not None:
                    steady = replica.name not in self.restarting
                    self.samples.append(
                        {"t": round(self.now(), 2), "replica": replica.name, "steady": steady}
                        | found
                    )
            self.done.wait(self.args.interval)

    def rolling_restart(self) -> None:
        """Each replica in turn: stopped (it drains first), started, back in haproxy."""
        for replica in self.replicas:
            began = self.now()
            self.restarting.add(replica.name)
            status = replica.restart()
            self.balancer.wait_status(replica.name, "UP")
            self.restarting.discard(replica.name)
            self.event("restart", replica.name, began, exit=status)

    def reload_all(self) -> None:
        for replica in self.replicas:
            began = self.now()
            self.event("reload", replica.name, began, status=replica.reload())

    def schedule(self) -> None:
        """Restarts and reloads when due, until `--minutes` have passed (one at a time)."""
        end = self.args.minutes * 60
        restart_s, reload_s = self.args.restart_every * 60, self.args.reload_every * 60
        next_restart, next_reload = restart_s, reload_s
        while self.now() < end:
            if self.now() >= next_restart:
                self.rolling_restart()
                next_restart = _next_slot(next_restart, restart_s, self.now())
            elif self.now() >= next_reload:
                self.reload_all()
                next_reload = _next_slot(next_reload, reload_s, self.now())
            else:
                time.sleep(0.2)


def _next_slot(slot: float, period: float, now: float) -> float:
    """The first slot after `now` on the grid of `period` (slots missed while busy skipped)."""
    while slot <= now:
        slot += period
    return slot


def run_clients(soak: Soak) -> Traffic:
    """Client threads of mixed traffic through the balancer while the schedule runs."""
    results: list[Traffic] = []
    seconds = soak.args.minutes * 60

    def client(index: int) -> None:
        results.append(
            mixed_traffic(
                soak.balancer,
                seconds,
                seed=index,
                oversize=MAX_BODY_BYTES + 4096,
                mix=SOAK_MIX,
            )
        )

    clients = [threading.Thread(target=client, args=(i,)) for i in range(soak.args.clients)]
    watcher = threading.Thread(target=soak.watch)
    for thread in [*clients, watcher]:
        thread.start()
    try:
        soak.schedule()
    finally:
        for thread in clients:
            thread.join()
        soak.done.set()
        watcher.join()
    return merge(results)


def main() -> None:
    args = parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "DEEPSVDD_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "DEEPSVDD_BODY_TIMEOUT_S": "5",
        "DEEPSVDD_DRAIN_S": str(DRAIN_S),
        "DEEPSVDD_WORKERS": str(args.workers),
    }
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        replicas = [
            Replica(name, free_port(), args.models_dir, Path(work) / f"{name}.log", env)
            for name in ("a", "b")
        ]
        try:
            for replica in replicas:
                replica.start()
            with balancing({r.name: r.port for r in replicas}, Path(work)) as balancer:
                for replica in replicas:
                    balancer.wait_status(replica.name, "UP")
                soak = Soak(args, replicas, balancer)
                print(f"soaking for {args.minutes:g} minutes through {balancer.url}", flush=True)
                traffic = run_clients(soak)
                final = balancer.stats()
        finally:
            for replica in replicas:
                if replica.process is not None and replica.process.poll() is None:
                    replica.stop()
        logs = {r.name: r.log.read_text(errors="replace") for r in replicas}
    for name, text in logs.items():
        if "Traceback" in text:
            print(f"replica {name} logged a traceback:\n{text[-3000:]}", file=sys.stderr)
    command = ".venv/bin/python -m bench.soak " + shlex.join(sys.argv[1:])
    write_report(args, soak, traffic, final, logs, command)
    print(f"wrote soak.json, soak.md and soak.png in {args.out_dir}")
