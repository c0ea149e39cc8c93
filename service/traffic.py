"""Traffic policies: how the requests that name no version are shared among a model's versions,
and which version scores them in the shadow, read from `<models_dir>/<name>/traffic.json`."""

from __future__ import annotations

import json
import logging
import math
import os
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

from service.repository import LoadFailure, Repository

log = logging.getLogger(__name__)

# `<models_dir>/<name>/traffic.json`: {"weights": {"1": 90, "2": 10}, "shadow": 3}; it overrides
# `default_version` for the requests that name no version.
TRAFFIC_FILE = "traffic.json"
TOTAL = 100.0  # the weights are percentages: they add up to this
_MAX_BYTES = 4096
_KEYS = {"weights", "shadow", "previous"}


class PolicyError(ValueError):
    """A policy that cannot serve; the message says why."""


def _version(value: Any, what: str) -> int:
    """A version number from JSON (a positive integer, or its digits as a string)."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 10 and int(text) > 0):
        raise PolicyError(f"{what} must be a version number, not {str(value)[:16]!r}")
    return int(text)


def _weight(version: int, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(f"the weight of version {version} must be a number, not {value!r}")
    if value < 0:
        raise PolicyError(f"the weight of version {version} is negative ({value})")
    return float(value)


@dataclass(frozen=True)
class TrafficPolicy:
    """Percent of the requests naming no version per version (adding up to 100), the version
    that scores them all in the shadow, and the primary a promotion replaced (for rollback)."""

    weights: dict[int, float]
    shadow: int | None = None
    previous: int | None = None
    _cumulative: list[float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cumulative", list(accumulate(self.weights.values())))

    @classmethod
    def parse(cls, data: Any) -> TrafficPolicy:
        """The policy of a JSON object; `PolicyError` saying what is wrong with it."""
        if not isinstance(data, dict):
            raise PolicyError("a traffic policy must be a JSON object with 'weights'")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise PolicyError(f"unknown keys {unknown}; a policy has {sorted(_KEYS)}")
        raw = data.get("weights")
        if not isinstance(raw, dict) or not raw:
            raise PolicyError("'weights' must map at least one version to its percent")
        weights: dict[int, float] = {}
        for key, value in raw.items():
            version = _version(key, "a key of 'weights'")
            weights[version] = _weight(version, value)
        total = sum(weights.values())
        if not math.isclose(total, TOTAL, abs_tol=1e-6):
            raise PolicyError(f"the weights add up to {total:g}, not {TOTAL:g}")
        shadow, previous = data.get("shadow"), data.get("previous")
        return cls(
            dict(sorted(weights.items())),
            None if shadow is None else _version(shadow, "'shadow'"),
            None if previous is None else _version(previous, "'previous'"),
        )

    def to_json(self) -> dict[str, Any]:
        weights = {str(v): int(w) if w.is_integer() else w for v, w in self.weights.items()}
        return {"weights": weights, "shadow": self.shadow, "previous": self.previous}

    @property
    def primary(self) -> int:
        """The version with the largest share (the lowest of equals)."""
        return max(self.weights, key=lambda v: (self.weights[v], -v))

    def check(self, repository: Repository, name: str) -> None:
        """`PolicyError` unless every version it names is loaded and the shadow takes the
        images the versions it shadows take."""
        loaded = repository.versions(name)
        for version in (*self.weights, *([self.shadow] if self.shadow is not None else [])):
            if version not in loaded:
                raise PolicyError(f"version {version} of {name!r} is not loaded (loaded: {loaded})")
        if self.shadow is None:
            return
        shadow = repository.get(name, self.shadow)
        for version in self.weights:
            served = repository.get(name, version)
            if shadow and served and served.metadata.input != shadow.metadata.input:
                raise PolicyError(
                    f"shadow version {self.shadow} takes other images than version {version}"
                )

    def pick(self, rng: random.Random) -> int:
        """A version drawn by the weights."""
        index = bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
        return list(self.weights)[min(index, len(self.weights) - 1)]


@dataclass(frozen=True)
class Traffic:
    """The policy each model serves by, and why a model's file was refused."""

    policies: dict[str, TrafficPolicy] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def policy(self, name: str) -> TrafficPolicy | None:
        return self.policies.get(name)

    def route(self, name: str, rng: random.Random) -> int | None:
        """The version for a request naming none; None: the model's default version."""
        policy = self.policies.get(name)
        return policy.pick(rng) if policy is not None else None


def read_policy(path: Path) -> TrafficPolicy:
    """The policy in `path`; `PolicyError` for a file that is not one."""
    try:
        with path.open("rb") as f:
            text = f.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"cannot be read: {exc.strerror}") from exc
    if len(text) > _MAX_BYTES:
        raise PolicyError(f"is over {_MAX_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PolicyError(f"is not JSON: {exc}") from exc
    return TrafficPolicy.parse(data)


def write_policy(model_dir: Path, policy: TrafficPolicy | None) -> None:
    """Writes (None: removes) `model_dir/traffic.json` atomically: a reader sees the old file
    or the new one, never half of one."""
    path = model_dir / TRAFFIC_FILE
    if policy is None:
        path.unlink(missing_ok=True)
        return
    partial = model_dir / f".{TRAFFIC_FILE}.{os.getpid()}.tmp"
    partial.write_text(json.dumps(policy.to_json(), indent=2) + "\n")
    os.replace(partial, path)


def load_policies(
    models_dir: Path, repository: Repository, previous: Traffic
) -> tuple[Traffic, list[LoadFailure]]:
    """The policy file of every loaded model, checked against what is loaded. A refused file
    leaves the model's previous policy serving (while its versions are loaded)."""
    policies: dict[str, TrafficPolicy] = {}
    errors: dict[str, str] = {}
    for name in repository.names():
        path = models_dir / name / TRAFFIC_FILE
        if not path.is_file():
            continue
        try:
            policy = read_policy(path)
            policy.check(repository, name)
        except PolicyError as exc:
            errors[name] = _refusal(repository, name, previous.policy(name), policies, exc)
            continue
        policies[name] = policy
        log.info("model %s: traffic %s", name, policy.to_json())
    failures = [LoadFailure(name, "", f"{TRAFFIC_FILE}: {why}") for name, why in errors.items()]
    for failure in failures:
        log.error("refused the traffic policy of %s: %s", failure.model, failure.reason)
    return Traffic(policies, errors), failures


def _refusal(
    repository: Repository,
    name: str,
    kept: TrafficPolicy | None,
    policies: dict[str, TrafficPolicy],
    error: PolicyError,
) -> str:
    """Why the file was refused, and what serves instead (the previous policy, kept in
    `policies`, while it still checks)."""
    if kept is not None:
        try:
            kept.check(repository, name)
        except PolicyError:
            kept = None
    if kept is not None:
        policies[name] = kept
        return f"{error}; the previous policy keeps serving"
    return f"{error}; version {repository.default_version(name)} (the default) serves"
