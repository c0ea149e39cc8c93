"""The Ray scoring benchmark's report: images/s and peak memory per engine and image count."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    engine: str
    actors: int
    images: int
    seconds: float
    images_per_s: float
    pipeline_s: float | None  # Ray Data's execution alone (Ray's log), None for local
    pipeline_images_per_s: float | None
    driver_peak_mib: float
    workers_peak_mib: float
    total_peak_mib: float


def _label(run: Run) -> str:
    return "local (one process)" if run.engine == "local" else f"ray, {run.actors} actor(s)"


def _maybe(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def report(runs: list[Run], setup: dict[str, object]) -> str:
    host = setup["machine"]
    assert isinstance(host, dict)
    lines = [
        "# Offline scoring on Ray Data: images/s and memory",
        "",
        f"Written by `{setup['command']}`: `deepsvdd score {setup['model']}` over generated "
        "28 x 28 grey PNGs (one file each, distinct noise), as a process of its own per run; "
        "the local engine in one process (ONNX Runtime's default threads), and the Ray engine "
        "starting its own local instance (one ONNX Runtime thread per actor). Seconds are end "
        "to end: start-up, Ray's included; Ray Data s is the dataset's execution alone (read, "
        "score, write: Ray's own log line). Peak memory is the resident set sampled every "
        "0.25 s: of the driver, of the Ray workers together, and of the whole process tree "
        "(raylet, GCS and the rest); pages of Ray's shared object store count in every "
        f"process that maps them. Machine: {host['cpus']} CPUs ({host['cpu']}), shared "
        f"(load average {host['load_average']} at the start), Python {host['python']}, "
        f"{setup['date']}.",
        "",
        "| engine | images | seconds | images/s | Ray Data s | its images/s | driver MiB "
        "| workers MiB | all MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        lines.append(
            f"| {_label(r)} | {r.images} | {r.seconds:g} | {r.images_per_s:g} | "
            f"{_maybe(r.pipeline_s)} | {_maybe(r.pipeline_images_per_s)} | "
            f"{r.driver_peak_mib:g} | {r.workers_peak_mib:g} | {r.total_peak_mib:g} |"
        )
    lines += ["", "Peak memory (all MiB) as the image count grows:", ""]
    for label in dict.fromkeys(_label(r) for r in runs):
        mine = sorted((r for r in runs if _label(r) == label), key=lambda r: r.images)
        peaks = ", ".join(f"{r.total_peak_mib:g} ({r.images})" for r in mine)
        lines.append(f"- {label}: {peaks}")
    return "\n".join(lines) + "\n"
