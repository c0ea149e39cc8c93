"""The shadow cost experiment's report: images/s per load with the shadow off and on."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    load: str
    shadow: bool
    round: int
    batch: int
    clients: int
    requests: int
    seconds: float
    images_per_s: float
    p50_ms: float
    # The service's CPU time per answered image: what the shadow adds, whatever else runs.
    cpu_ms_per_image: float
    # What the shadow did meanwhile: images scored, and batches dropped (busy or failed).
    shadow_images: float
    shadow_dropped: float


def _median(cells: list[Cell], load: str, shadow: bool, field: str) -> float:
    return statistics.median(
        getattr(c, field) for c in cells if c.load == load and c.shadow == shadow
    )


def report(cells: list[Cell], setup: dict[str, object]) -> str:
    host = setup["machine"]
    assert isinstance(host, dict)
    lines = [
        "# Shadow scoring: what it costs",
        "",
        f"Written by `{setup['command']}`: one service process (one worker, "
        f"{setup['threads']} ONNX Runtime thread(s), CPU) serving `{setup['model']}` version 1 "
        "to every request (traffic.json weights {1: 100}), and version 2 (the same graph, so "
        "the same cost per image) as its shadow in the cells marked on; closed-loop asyncio "
        f"clients posting PNGs to /score for {setup['seconds']} s a cell, the two settings "
        f"alternating for {setup['rounds']} rounds. Machine: {host['cpus']} CPUs (shared: "
        f"load average {host['load_average']} at the start), Python {host['python']}, "
        f"{setup['date']}.",
        "",
        "| load | shadow | round | batch | clients | requests | images/s | p50 ms | "
        "CPU ms/image | shadow images | shadow drops |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        lines.append(
            f"| {c.load} | {'on' if c.shadow else 'off'} | {c.round} | {c.batch} | {c.clients} "
            f"| {c.requests} | {c.images_per_s:g} | {c.p50_ms:g} | {c.cpu_ms_per_image:g} "
            f"| {c.shadow_images:g} "
            f"| {c.shadow_dropped:g} |"
        )
    lines += ["", "Medians with the shadow on relative to off, per load:", ""]
    for load in dict.fromkeys(c.load for c in cells):
        off, on = (_median(cells, load, s, "images_per_s") for s in (False, True))
        cpu_off, cpu_on = (_median(cells, load, s, "cpu_ms_per_image") for s in (False, True))
        shadowed = _median(cells, load, True, "shadow_images")
        answered = statistics.median(
            c.requests * c.batch for c in cells if c.load == load and c.shadow
        )
        lines.append(
            f"- {load}: images/s {on:g} / {off:g} = {on / off:.2f}; service CPU per image "
            f"{cpu_on:g} / {cpu_off:g} ms = {cpu_on / cpu_off:.2f}; the shadow scored "
            f"{shadowed / answered:.0%} of the answered images"
        )
    others = setup["others"]
    assert isinstance(others, dict)
    lines += [
        "",
        f"Other processes used {others['cpu_s']:.0f} CPU s during the {others['wall_s']} s "
        f"run (busiest: {', '.join(f'{n} {s:.0f} s' for n, s in others['top'])}).",
    ]
    lines += [
        "",
        "The shadow runs a second inference of each request's images on threads of its own, "
        "at the request's batch size: the primary's batcher merges concurrent single-image "
        "requests into one run, the shadow runs each alone, so per image it costs more on "
        "single-image loads than on batches. At most 2 shadow batches run at once; the "
        "others are dropped and counted (shadow drops), which bounds its cost when it cannot "
        "keep up, and its comparison then covers a sample. On this shared machine images/s "
        "moves with the other processes' load; the service's CPU time per image is the "
        "steadier measure of what the shadow costs.",
    ]
    return "\n".join(lines) + "\n"
