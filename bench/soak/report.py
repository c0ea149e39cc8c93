"""The soak's results: soak.json (every sample, event and count), soak.md (lost requests, the
slope per hour of each replica's RSS, files and threads after the warm-up) and soak.png."""

from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.harness.machine import cpu_model, python_version
from bench.harness.results import save_figure, write_json, write_text
from bench.harness.traffic import EXPECTED, NO_ANSWER, Traffic

if TYPE_CHECKING:
    from bench.soak.run import Soak

MIB = 1024 * 1024
SERIES = {"rss": "RSS (MiB)", "fds": "open files", "threads": "threads"}


# Of the reads (/models, /metrics, /health/live, /health/ready) only readiness answers 503:
# a draining replica's, before haproxy's checks take it out. That is its job, not a loss.
DRAINING_READINESS = ("read", 503)


def is_lost(kind: str, status: int) -> bool:
    """No answer, a 5xx, or a status that this kind of request never gets."""
    if (kind, status) == DRAINING_READINESS:
        return False
    return status == NO_ANSWER or status >= 500 or status not in EXPECTED[kind]


def lost_requests(traffic: Traffic) -> dict[str, int]:
    """'kind -> status' -> count, for the lost requests only (a status -1: no answer)."""
    return {
        f"{kind} -> {status}": n
        for (kind, status), n in sorted(traffic.counts.items())
        if is_lost(kind, status)
    }


def series(
    samples: list[dict[str, Any]], replica: str, key: str, steady_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(minutes, values) of one replica's samples (`steady_only`: not while it restarted);
    RSS in MiB."""
    rows = [s for s in samples if s["replica"] == replica and (s["steady"] or not steady_only)]
    minutes = np.array([s["t"] / 60 for s in rows])
    values = np.array([s[key] for s in rows], dtype=float)
    return minutes, values / MIB if key == "rss" else values


def fit(samples: list[dict[str, Any]], replica: str, warmup_min: float) -> dict[str, Any]:
    """Per series, the steady samples after the warm-up: first, last and max value, and the
    least-squares slope per hour (None with fewer than 3 samples)."""
    out: dict[str, Any] = {}
    for key in SERIES:
        minutes, values = series(samples, replica, key, steady_only=True)
        keep = minutes >= warmup_min
        minutes, values = minutes[keep], values[keep]
        if len(values) < 3:
            out[key] = None
            continue
        slope = float(np.polyfit(minutes / 60, values, 1)[0])
        out[key] = {
            "first": float(values[0]),
            "last": float(values[-1]),
            "max": float(values.max()),
            "slope_per_hour": slope,
        }
    return out


def summary(args: argparse.Namespace, soak: Soak, traffic: Traffic) -> dict[str, Any]:
    names = [r.name for r in soak.replicas]
    restarts = [e for e in soak.events if e["kind"] == "restart"]
    reloads = Counter(e["status"] for e in soak.events if e["kind"] == "reload")
    lost = lost_requests(traffic)
    return {
        "requests": traffic.requests,
        "lost": sum(lost.values()),
        "lost_by_kind": lost,
        "restarts": len(restarts),
        "restart_seconds_max": max((e["seconds"] for e in restarts), default=None),
        "restart_exit_statuses": sorted({e["exit"] for e in restarts}),
        "reloads": {str(status): n for status, n in sorted(reloads.items())},
        "fits": {name: fit(soak.samples, name, args.warmup_minutes) for name in names},
    }


def _minutes(value: float) -> str:
    return f"{value:g} minute{'' if value == 1 else 's'}"


def _fit_rows(fits: dict[str, Any]) -> list[str]:
    rows = []
    for name, by_key in fits.items():
        for key, label in SERIES.items():
            f = by_key[key]
            if f is None:
                rows.append(f"| {name} | {label} | too few samples | | | |")
                continue
            rows.append(
                f"| {name} | {label} | {f['first']:.1f} | {f['last']:.1f} | {f['max']:.1f} | "
                f"{f['slope_per_hour']:+.2f} |"
            )
    return rows


def _traffic_rows(traffic: Traffic) -> list[str]:
    by_kind: dict[str, dict[int, int]] = {}
    for (kind, status), count in sorted(traffic.counts.items()):
        by_kind.setdefault(kind, {})[status] = count
    names = {0: "cut", NO_ANSWER: "no answer"}
    return [
        f"| {kind} | "
        + ", ".join(f"{names.get(status, status)}: {n}" for status, n in statuses.items())
        + f" | {sum(n for status, n in statuses.items() if is_lost(kind, status))} |"
        for kind, statuses in by_kind.items()
    ]


def markdown(
    args: argparse.Namespace,
    facts: dict[str, Any],
    traffic: Traffic,
    balancer: dict[str, dict[str, str]],
    command: str,
) -> str:
    names = list(facts["fits"])
    checks = ", ".join(
        f"{n}: {balancer[n]['chkdown']} times out, {balancer[n]['stot']} sessions" for n in names
    )
    backend = balancer.get("BACKEND", {})
    return "\n".join(
        [
            "# Soak: rolling restarts and reloads behind haproxy",
            "",
            f"{dt.date.today().isoformat()}, {cpu_model()}, Python {python_version()}; "
            f"{args.minutes:g} minutes of mixed traffic from {args.clients} client threads "
            f"through haproxy to two replicas of `python -m service` ({args.workers} workers "
            f"each, the models of `{args.models_dir.name}/`); a rolling restart every "
            f"{_minutes(args.restart_every)}, `POST /admin/reload` to each replica every "
            f"{_minutes(args.reload_every)}.",
            "",
            f"**{facts['lost']} lost requests** of {facts['requests']} (no answer, a 5xx, or a "
            f"status the kind never gets; a 503 to a read is a draining replica's readiness, "
            f"not a loss); {facts['restarts']} replica restarts (each at most "
            f"{facts['restart_seconds_max']} s from SIGTERM to back in haproxy; exit statuses "
            f"{facts['restart_exit_statuses']}); reloads by status: {facts['reloads']}.",
            "",
            f"haproxy: {checks}; backend connection errors {backend.get('econ', '?')}, "
            f"response errors {backend.get('eresp', '?')}.",
            "",
            "## Each replica's processes (supervisor and workers, from /proc every "
            f"{args.interval:g} s), after a warm-up of {_minutes(args.warmup_minutes)}",
            "",
            "Slope: least-squares line through the steady samples after the warm-up (not "
            "those between a replica's SIGTERM and its return to haproxy), per hour; each "
            "restart starts new processes.",
            "",
            "| replica | series | first | last | max | slope / hour |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
            *_fit_rows(facts["fits"]),
            "",
            "## Traffic (kind, answers by status, lost)",
            "",
            "| kind | answers | lost |",
            "| --- | --- | ---: |",
            *_traffic_rows(traffic),
            "",
            "Reproduce:",
            "",
            f"    {command}",
            "",
            "`soak.png` plots the three series of each replica; `soak.json` holds every sample "
            "and event.",
            "",
        ]
    )


def figure(args: argparse.Namespace, soak: Soak) -> Figure:
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(SERIES), 1, sharex=True)
    colours = {r.name: f"C{i}" for i, r in enumerate(soak.replicas)}
    for ax, (key, label) in zip(axes, SERIES.items(), strict=True):
        for name, colour in colours.items():
            minutes, values = series(soak.samples, name, key)
            ax.plot(minutes, values, ".-", color=colour, linewidth=0.8, markersize=2, label=name)
        for event in soak.events:
            if event["kind"] == "restart":
                ax.axvline(event["t"] / 60, color=colours[event["replica"]], alpha=0.3, ls="--")
        ax.axvspan(0, args.warmup_minutes, color="0.9")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(title="replica", loc="upper left")
    axes[0].set_title("Two replicas behind haproxy: mixed traffic, restarts from the dashes")
    axes[-1].set_xlabel("minutes (grey: warm-up, left out of the fits)")
    return fig


def write_report(
    args: argparse.Namespace,
    soak: Soak,
    traffic: Traffic,
    balancer: dict[str, dict[str, str]],
    logs: dict[str, str],
    command: str,
) -> None:
    facts = summary(args, soak, traffic)
    out = args.out_dir
    write_json(
        out / "soak.json",
        {
            "command": command,
            "date": dt.date.today().isoformat(),
            "cpu": cpu_model(),
            "python": python_version(),
            "options": {k: v.name if isinstance(v, Path) else v for k, v in vars(args).items()},
            **facts,
            "tracebacks_logged": {name: "Traceback" in text for name, text in logs.items()},
            "traffic": {f"{k} -> {s}": n for (k, s), n in sorted(traffic.counts.items())},
            "unexpected_first": traffic.unexpected[:50],
            "events": soak.events,
            "samples": soak.samples,
        },
    )
    write_text(out / "soak.md", markdown(args, facts, traffic, balancer, command))
    save_figure(figure(args, soak), out / "soak.png", dpi=110)
