"""photos.md and photos.png from the report of bench/serving's photograph mode: a table per
case and size, the issue's goals judged from the run's own figures, the machine."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.serving.photos import COLORS, PACKAGE
from bench.serving.report import goal_lines

SPEEDUP = 3.0  # 1 MP JPEGs: at least this many times today's images/s (the full decode)
VS_LIMIT = 0.8  # ... and at least this fraction of the limit
GOAL_SIZE = "1"
# The issue's figures for today's service on 1024x1024 JPEGs and a 128x128 grey model.
ISSUE_TODAY = {"batched": 494.0, "single": 434.0}
TITLES = {
    "service": "this service, reduced decode",
    "service-full": "this service, full decode (today)",
    "plain": "plain FastAPI",
    "peer": "BentoML",
}
COLOURS = {"service": "#1f77b4", "service-full": "#9ecae1", "plain": "#ff7f0e", "peer": "#2ca02c"}


def case_title(case: dict) -> str:
    model = COLORS[case["model_color"]]
    return f"{model} 128x128 model, {COLORS[case['jpeg_color']]} JPEGs"


def goals(report: dict) -> list[dict]:
    """Per case and load at 1 MP: the speed-up over today's service, and the share of the
    limit, each met or not."""
    found = []
    for case in report["cases"].values():
        entry = case["sizes"].get(GOAL_SIZE)
        if entry is None:
            continue
        limit = entry["limit"]["images_per_s"]
        for load in ("batched", "single"):
            ours = entry["servers"]["service"][load]["images_per_s"]
            today = entry["servers"]["service-full"][load]["images_per_s"]
            found.append(
                {
                    "goal": f"{case_title(case)}, 1 MP, {load}: >= {SPEEDUP:g}x today's "
                    f"images/s and >= {VS_LIMIT:.0%} of the limit",
                    "reached": f"{ours / today:.2f}x today's ({ours:,.0f} against {today:,.0f}), "
                    f"{ours / limit:.0%} of the limit ({limit:,.0f}); "
                    f"{ours / ISSUE_TODAY[load]:.2f}x the issue's {ISSUE_TODAY[load]:,.0f}",
                    "met": ours >= SPEEDUP * today and ours >= VS_LIMIT * limit,
                }
            )
    return found


def _row(title: str, r: dict, limit: float, today: float) -> str:
    cpu = r.get("server_cpu_us_per_image")
    return (
        f"| {title} | {r['images_per_s']:,.0f} | {r['requests_per_s']:,.1f} | {r['p50_ms']:.1f} "
        f"| {r['p99_ms']:.1f} | {r['images_per_s'] / limit:.0%} | {r['images_per_s'] / today:.2f}x "
        f"| {'' if cpu is None else f'{cpu:,.0f}'} |"
    )


def _case_table(case: dict) -> list[str]:
    raw = case["raw_ort_batch_64"]
    lines = []
    for size, entry in case["sizes"].items():
        photos = case["photos"][size]
        limit = entry["limit"]["images_per_s"]
        ms = entry["decode_ms"]
        lines += [
            f"### {case_title(case)}, {size} MP",
            "",
            f"{len(photos['names'])} photographs, {photos['mean_bytes'] / 1e3:,.0f} kB on "
            f"average; one decode on one core: {ms['reduced']:.1f} ms reduced, "
            f"{ms['full']:.1f} ms full.",
            "",
            "| what | images/s | requests/s | p50 ms | p99 ms | vs limit | vs today | "
            "CPU us/image |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| raw ONNX Runtime, batch 64, decoded images | {raw['images_per_s']:,.0f} | | | "
            f"| {raw['images_per_s'] / limit:.0%} | | {raw['cpu_us_per_image']:,.0f} |",
            f"| limit: reduced decode on {entry['limit']['processes']:.0f} processes + "
            f"ORT batch 64 | {limit:,.0f} | | | | 100% | | |",
            f"| the same with the full decode | {entry['limit_full']['images_per_s']:,.0f} "
            f"| | | | {entry['limit_full']['images_per_s'] / limit:.0%} | | |",
        ]
        servers = entry["servers"]
        for load in ("batched", "single"):
            today = servers["service-full"][load]["images_per_s"]
            for label, results in servers.items():
                r = results[load]
                per = r["images_per_request"]
                title = f"{TITLES[label]}, {per:.0f} a request, -c{r['connections']:.0f}"
                lines.append(_row(title, r, limit, today))
        lines += [
            "",
            f"Failed requests (non-2xx, timeouts, socket errors): {_failed(servers)}.",
            "",
        ]
    return lines


def _failed(servers: dict) -> str:
    """Each server and load with failed requests, and how many; 'none' when there are none."""
    found = []
    for label, results in servers.items():
        for load, r in results.items():
            count = sum(v for k, v in r.items() if k.startswith("errors_"))
            if count:
                found.append(f"{TITLES[label]} {load}: {count:,.0f}")
    return "; ".join(found) or "none"


def _others(report: dict) -> str:
    others = report["other_processes"]
    share = others["cpu_s"] / (others["wall_s"] * report["cpus"])
    top = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in others["top"]) or "none"
    return (
        f"Other processes used {others['cpu_s']:,.0f} CPU-seconds during the "
        f"{others['wall_s']:.0f} s run ({share:.0%} of the available CPUs); the largest: {top}."
    )


def markdown(report: dict) -> str:
    m = report["machine"]
    setups = next(iter(report["cases"].values()))["server_setups"]
    lines = [
        "# Serving speed on photographs",
        "",
        f"{report['date']}, {report['cpus']} CPUs ({m['cpu']}). Photographs: Debian's "
        f"{PACKAGE}, scaled down to each size and saved as baseline JPEGs of quality 90 "
        "(bench/serving/photos.py). Models: 128x128, trained one epoch on the 1 MP "
        "photographs (their graph sets the speed, not their scores). Figures are medians of "
        f"{report['settings']['rounds']} round(s) of {report['settings']['duration']} s a load; "
        "'vs limit' divides by the limit of the same size, 'vs today' by this service with "
        "the full decode under the same load.",
        "",
        *goal_lines(goals(report)),
        "",
        "## Figures",
        "",
    ]
    for case in report["cases"].values():
        lines += _case_table(case)
    lines += [
        "Servers: "
        + "; ".join(f"{TITLES[k]}: {v}" for k, v in setups.items())
        + ". The limit: a pool of processes decodes (bench/serving/limit.py) while the parent "
        "runs ONNX Runtime on every 64; no HTTP, no multipart, no batching across requests. "
        "The pool has as many processes as the service has decoding threads (workers times "
        "its pool's threads), so that on a shared machine both get a like share of the CPUs.",
        "",
        "## Machine",
        "",
        f"{m['cpus_available']} CPUs available, {m['cpu']}; {m['platform']}, Python "
        f"{m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"Load averages before: {report['loadavg_before']}, after: {report['loadavg_after']}. "
        f"{_others(report)} wrk runs on the same CPUs as the servers: compare within one run.",
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
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Batched images/s per case and size: the limit, then each server."""
    labels, values, colors = [], [], []
    for case in report["cases"].values():
        for size, entry in case["sizes"].items():
            group = f"{case['model_color']}/{case['jpeg_color']}\n{size} MP"
            labels.append(f"{group}\nlimit")
            values.append(entry["limit"]["images_per_s"])
            colors.append("#444444")
            for label, results in entry["servers"].items():
                labels.append(f"{group}\n{label}")
                values.append(results["batched"]["images_per_s"])
                colors.append(COLOURS[label])
    figure = Figure(figsize=(max(8, 0.55 * len(values)), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bars = axes.bar(range(len(values)), values, color=colors)
    axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=6)
    axes.set_xticks(range(len(values)), labels, fontsize=5)
    axes.set_ylabel("images / second, batched requests")
    axes.set_title(f"Scoring JPEG photographs, 128x128 models ({report['cpus']} CPUs)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
