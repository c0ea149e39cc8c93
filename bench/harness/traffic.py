"""The mixed traffic that the hardening suite's short soak and bench/soak send: good and
corrupt images, oversized bodies, wrong types, unknown models, reloads, reads, cut uploads."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np

from bench.harness.http import MULTIPART, check_error, multipart, post_head, raw_request
from bench.harness.images import files, png
from bench.harness.servers import AUTH, ServerProcess


@dataclass
class Traffic:
    """What the mixed traffic sent and got: (kind, status) counts, unexpected answers."""

    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.counts.values())

    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.counts.items() if status >= 500)


class Endpoint(Protocol):
    """Where the traffic goes: a server, or a balancer in front of several."""

    @property
    def url(self) -> str: ...

    @property
    def port(self) -> int: ...


# A request that got no answer at all (refused, reset): counted under this status.
NO_ANSWER = -1

# kind -> the statuses it may get (503: shed by a full queue).
EXPECTED: dict[str, frozenset[int]] = {
    "good": frozenset({200, 503}),
    "bad_image": frozenset({400, 503}),
    "oversize": frozenset({413}),
    "wrong_type": frozenset({415}),
    "unknown_model": frozenset({404}),
    "reload": frozenset({200}),
    "read": frozenset({200}),
    "cut": frozenset({0}),
}


def _post_raw(client: httpx.Client, body: bytes, media: str) -> httpx.Response:
    return client.post("/score", content=body, headers={"content-type": media})


def _one(
    kind: str, client: httpx.Client, port: int, rng: random.Random, oversize: int
) -> httpx.Response | None:
    """Sends one request of `kind`; None for a request cut off mid-body (no answer)."""
    seed = rng.randrange(1 << 30)
    if kind == "good":
        return client.post("/score", files=files(*range(seed, seed + rng.randint(1, 4))))
    if kind == "bad_image":
        cut = png(seed)[: rng.randrange(8, 40)]
        return _post_raw(client, cut if rng.random() < 0.5 else rng.randbytes(900), "image/png")
    if kind == "oversize":
        return _post_raw(client, np.random.default_rng(seed).bytes(oversize), "image/png")
    if kind == "wrong_type":
        return _post_raw(client, b"{}", "text/json")
    if kind == "unknown_model":
        return client.post("/score", params={"model": "nope"}, files=files(seed))
    if kind == "reload":
        return client.post("/admin/reload", headers=AUTH)
    if kind == "read":
        return client.get(rng.choice(["/models", "/metrics", "/health/ready", "/health/live"]))
    body = multipart([("cut.png", png(seed), "image/png")])
    with raw_request(port, post_head("/score", MULTIPART, len(body)), body[: len(body) // 2]):
        return None  # closed mid-body


# How often each kind is sent, out of 100.
MIX = {"good": 55, "bad_image": 12, "oversize": 5, "wrong_type": 5, "unknown_model": 5}
MIX |= {"reload": 3, "read": 10, "cut": 5}


def mixed_traffic(
    server: Endpoint,
    seconds: float,
    *,
    seed: int,
    oversize: int,
    mix: dict[str, int] | None = None,
) -> Traffic:
    """One client thread's worth of mixed requests for `seconds` (`oversize`: a body over
    the server's limit; `mix`: the weights, default MIX). A request that gets no answer is
    counted as NO_ANSWER and unexpected, and the traffic goes on."""
    rng = random.Random(seed)
    kinds, weights = zip(*(MIX if mix is None else mix).items(), strict=True)
    traffic = Traffic()
    end = time.monotonic() + seconds
    with httpx.Client(base_url=server.url, timeout=60) as client:
        while time.monotonic() < end:
            kind = rng.choices(kinds, weights)[0]
            try:
                response = _one(kind, client, server.port, rng, oversize)
            except (httpx.TransportError, OSError) as exc:
                traffic.counts[(kind, NO_ANSWER)] += 1
                traffic.unexpected.append(f"{kind} -> {type(exc).__name__}")
                continue
            status = 0 if response is None else response.status_code
            traffic.counts[(kind, status)] += 1
            if status not in EXPECTED[kind]:
                traffic.unexpected.append(f"{kind} -> {status}")
            elif response is not None and status >= 400:
                try:
                    check_error(response)
                except AssertionError as exc:
                    traffic.unexpected.append(f"{kind} -> {status}: {exc}")
    return traffic


def merge(parts: list[Traffic]) -> Traffic:
    total = Traffic()
    for part in parts:
        total.counts.update(part.counts)
        total.unexpected.extend(part.unexpected)
    return total


def sample(server: ServerProcess) -> dict[str, Any]:
    return {"fds": server.fds(), "rss": server.rss_bytes(), "threads": server.threads()}
