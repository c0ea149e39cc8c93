"""serving.md and serving.png from the report bench/serving gathers: the table,
the issue's three goals judged from the run's own figures, the machine and what else ran."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parents[2]
NOTES = Path(__file__).resolve().parent / "serving_notes.md"  # appended as it is
BATCHED_VS_RAW = 0.60  # batched uploads: at least this fraction of raw ORT batch-64 images/s
SINGLE_VS_PLAIN = 2.5  # single images: at least this many times the plain endpoint's requests/s
SINGLE_P99_MS = 10.0  # ... with a p99 at most this
TITLES = {"service": "this service", "plain": "plain FastAPI", "peer": "BentoML"}
COLORS = {"service": "#1f77b4", "plain": "#ff7f0e", "peer": "#2ca02c"}
# CPU flags that change ONNX Runtime's kernels (AVX-512 about 3x raw ORT on this model).
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile")


def goals(report: dict) -> list[dict]:
    """Each goal: what it asks, the figure reached, met or not, from `report`'s medians."""
    servers = report["servers"]
    service, plain = servers["service"], servers["plain"]
    batched = service["batched"]["vs_raw_batch_64"]
    speedup = service["single"]["requests_per_s"] / plain["single"]["requests_per_s"]
    p99 = service["single"]["p99_ms"]
    found = [
        {
            "goal": f"batched uploads >= {BATCHED_VS_RAW:.0%} of raw ONNX Runtime batch 64",
            "reached": f"{batched:.0%}",
            "met": batched >= BATCHED_VS_RAW,
        },
        {
            "goal": f"single images >= {SINGLE_VS_PLAIN:g}x the plain endpoint's requests/s, "
            f"p99 <= {SINGLE_P99_MS:g} ms at -c{service['single']['connections']}",
            "reached": f"{speedup:.2f}x, p99 {p99:.1f} ms",
            "met": speedup >= SINGLE_VS_PLAIN and p99 <= SINGLE_P99_MS,
        },
    ]
    if "peer" in servers:
        peer = servers["peer"]
        ratios = {n: service[n]["images_per_s"] / peer[n]["images_per_s"] for n in service}
        found.append(
            {
                "goal": "ahead of the peer (BentoML) on every load, images/s",
                "reached": ", ".join(f"{n} {r:.2f}x" for n, r in ratios.items()),
                "met": all(r > 1 for r in ratios.values()),
            }
        )
    else:
        found.append(
            {"goal": "ahead of the peer (BentoML)", "reached": "peer not run", "met": False}
        )
    return found


def _per_round(result: dict) -> str:
    return " / ".join(f"{v:,.0f}" for v in result["rounds_images_per_s"])


def goal_lines(reached: list[dict]) -> list[str]:
    """The report's Goals section: each goal, what was reached, and whether it was met."""
    rows = [
        f"| {g['goal']} | {g['reached']} | {'met' if g['met'] else 'NOT met'} |" for g in reached
    ]
    return ["## Goals", "", "| goal | reached | |", "| --- | --- | --- |", *rows]


def _table(report: dict) -> list[str]:
    raw = report["raw_ort"]
    lines = [
        "| what | images/s | requests/s | p50 ms | p99 ms | vs raw ORT b64 | vs plain |"
        " CPU us/image | images/s per round |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in ("batch_1", "batch_64"):
        r = raw[key]
        ratio = r["images_per_s"] / raw["batch_64"]["images_per_s"]
        lines.append(
            f"| raw ONNX Runtime, batch {r['batch']:.0f} ({report['ort_threads']} threads) "
            f"| {r['images_per_s']:,.0f} | {r['runs'] / r['seconds']:,.0f} runs/s "
            f"| {r['run_ms']:.3f} | | {ratio:.0%} | | {r['cpu_us_per_image']:.0f} "
            f"| {_per_round(r)} |"
        )
    for load in ("batched", "single"):
        for label, results in report["servers"].items():
            r = results[load]
            cpu = r["server_cpu_us_per_image"]
            lines.append(
                f"| {TITLES[label]}, {r['images_per_request']} image(s)/request, "
                f"-c{r['connections']} | {r['images_per_s']:,.0f} | {r['requests_per_s']:,.1f} "
                f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['vs_raw_batch_64']:.0%} "
                f"| {r['vs_plain']:.2f}x | {'' if cpu is None else f'{cpu:.0f}'} "
                f"| {_per_round(r)} |"
            )
    return lines


def _others(report: dict) -> str:
    others = report["other_processes"]
    share = others["cpu_s"] / (others["wall_s"] * report["machine"]["cpus_available"])
    top = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in others["top"]) or "none"
    return (
        f"Other processes on the machine used {others['cpu_s']:,.0f} CPU-seconds during the "
        f"{others['wall_s']:.0f} s run ({share:.0%} of its available CPUs); the largest: {top}."
    )


def markdown(report: dict) -> str:
    m = report["machine"]
    failed = {k: v for k, v in report["errors"].items() if v}
    errors = ", ".join(f"{k}: {v}" for k, v in failed.items()) if failed else "none"
    settings = report["settings"]
    variant = "".join(f", `{item}`" for item in settings["service_env"])
    if Path(settings["service_dir"]) != REPO:
        variant += f", run in `{settings['service_dir']}` (another copy of service/)"
    flags = ", ".join(f for f in FLAGS if f in m["flags"]) or "none of " + ", ".join(FLAGS)
    lines = [
        "# Serving speed",
        "",
        f"Model `{report['model']}` (input {report['input']}), {report['date']}, on "
        f"{m['cpus_available']} CPUs ({m['cpu']}; flags: {flags}). Images: the first "
        "Fashion-MNIST test images, pre-encoded as 28x28 grayscale PNGs "
        f"({report['png_bytes_mean']:.0f} bytes on average). Figures are medians over "
        f"{len(report['rounds'])} round(s); each round measures raw ONNX Runtime, then every "
        "load on every server in turn, and its ratios use that round's raw batch-64 figure.",
        "",
        *_table(report),
        "",
        *goal_lines(goals(report)),
        "",
        "Inside the service (from its /metrics over each measured load, all workers):",
        "",
        "| load | mean ORT batch | ORT busy (run time / wall time, summed over workers) "
        "| mean queue wait ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for load_name, r in report["servers"]["service"].items():
        lines.append(
            f"| {load_name} | {r['mean_batch']:.1f} | {r['ort_busy_fraction']:.0%} "
            f"| {r['mean_queue_wait_ms']:.2f} |"
        )
    s = report["server_setups"]
    lines += [
        "",
        "Notes: p50 and p99 are wrk's request latencies (for raw ORT: the mean time of one "
        "run). CPU us/image is the CPU time of the server's whole process tree (workers "
        "included; for raw ORT: the benchmark's) per image scored. Failed requests (non-2xx, "
        f"timeouts): {errors}. Largest score difference from the service's: "
        + ", ".join(f"{TITLES[k]} {v:.2e}" for k, v in report["score_difference"].items())
        + f". Service: `python -m service` ({s['service']}), default settings but "
        f"`DEEPSVDD_PROVIDERS=CPUExecutionProvider`{variant}; plain: {s['plain']} "
        "(bench/serving/plain_app.py)"
        + (f"; peer: {s['peer']} (bench/serving/peer_bento.py)" if "peer" in s else "")
        + ". Each logs every request as its default does.",
        "",
        "## Machine",
        "",
        f"{m['cpus_available']} CPUs available ({m['cpus_online']} online, cgroup quota "
        f"{m['cpu_quota'] if m['cpu_quota'] is not None else 'none'}), {m['cpu']}, flags "
        f"{flags}; {m['platform']}, Python {m['python']}, {m['wrk']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        f"Load averages (1, 5, 15 min) before: {report['loadavg_before']}, after: "
        f"{report['loadavg_after']}. {_others(report)} wrk runs on the same CPUs as the "
        "servers, so compare figures within one run.",
        "",
        "## Reproduce",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"It took {report['wall_seconds']:.0f} s.",
        "",
    ]
    notes = NOTES.read_text() if NOTES.exists() else ""
    notes = "\n".join(line for line in notes.splitlines() if not line.startswith("<!--"))
    return "\n".join(lines) + notes.lstrip("\n") + "\n"


def plot(report: dict, path: Path) -> None:
    raw = report["raw_ort"]
    labels = ["raw ORT\nbatch 1", "raw ORT\nbatch 64"]
    values = [raw["batch_1"]["images_per_s"], raw["batch_64"]["images_per_s"]]
    colors = ["#888888", "#444444"]
    for load in ("batched", "single"):
        for label, results in report["servers"].items():
            r = results[load]
            labels.append(f"{label}\n{r['images_per_request']}/req -c{r['connections']}")
            values.append(r["images_per_s"])
            colors.append(COLORS[label])
    figure = Figure(figsize=(10, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bars = axes.bar(labels, values, color=colors)
    axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
    target = BATCHED_VS_RAW * raw["batch_64"]["images_per_s"]
    axes.axhline(target, color="#d62728", linestyle="--", linewidth=1)
    axes.text(
        len(values) - 0.5,
        target,
        f"goal: {BATCHED_VS_RAW:.0%} of raw batch 64",
        color="#d62728",
        ha="right",
        va="bottom",
        fontsize=8,
    )
    axes.set_ylabel("images / second")
    axes.set_title(
        f"Scoring throughput, {report['model']} ({report['machine']['cpus_available']} CPUs)"
    )
    axes.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
