"""The gRPC benchmark's report: images/s and latency per load and protocol, and gRPC's ratios."""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("grpc", "rest-v2-binary", "score")


@dataclass(frozen=True)
class Result:
    load: str
    protocol: str
    batch: int
    concurrency: int
    requests: int
    seconds: float
    images_per_s: float
    p50_ms: float
    p99_ms: float


def report(results: list[Result], setup: dict[str, object]) -> str:
    host = setup["machine"]
    assert isinstance(host, dict)
    lines = [
        "# gRPC against REST: images/s",
        "",
        "Written by `python -m bench.grpc`: one service process (one worker, "
        f"{setup['threads']} ONNX Runtime thread(s), CPU) serving `{setup['model']}`; closed-loop "
        f"asyncio clients in one process for {setup['seconds']} s per cell; gRPC through "
        "`tritonclient.grpc.aio` (raw tensors), REST v2 with the binary tensor extension, and "
        "/score with PNG uploads (decoded by the service). "
        f"Machine: {host['cpus']} CPUs (shared: load average {host['load_average']} at the "
        f"start), Python {host['python']}, {setup['date']}.",
        "",
        "| load | protocol | batch | clients | requests | images/s | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.load} | {r.protocol} | {r.batch} | {r.concurrency} | {r.requests} | "
            f"{r.images_per_s:g} | {r.p50_ms:g} | {r.p99_ms:g} |"
        )
    lines += [
        "",
        "The clients run on the same CPUs as the service, and each protocol's client costs "
        "its own CPU: grpcio's C core per RPC, httpx (pure Python) per HTTP request. The "
        "gaps are what a Python client sees end to end, not the server's alone.",
        "",
        "gRPC's images/s relative to the others, per load:",
        "",
    ]
    for load in dict.fromkeys(r.load for r in results):
        rates = {r.protocol: r.images_per_s for r in results if r.load == load}
        ratios = ", ".join(
            f"{rates['grpc'] / rates[p]:.2f}x {p}" for p in PROTOCOLS[1:] if rates.get(p)
        )
        lines.append(f"- {load}: {ratios}")
    return "\n".join(lines) + "\n"
