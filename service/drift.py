"""Drift of each served version's scores: a bounded window of recent scores, compared with the
held-out normal scores its model file carries (PSI over their deciles, KS, shares above quantiles).

Each worker process keeps its own windows: with several workers, each window is a sample of the
whole traffic and its figures estimate the same quantities (service.metrics exports them so).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

# The reference quantiles whose exceedance share is exported; bounded label values.
ABOVE_QUANTILES = (0.5, 0.9, 0.95, 0.99)
PSI_FLOOR = 1e-4  # share given to an empty bin, so that ln(a / e) stays finite
DECILE_EDGES = np.linspace(0.1, 0.9, 9)
# Seconds between the refreshes a worker makes while it scores (a scrape refreshes too).
REFRESH_S = 5.0


@dataclass(frozen=True)
class DriftSettings:
    """Window bounds: at most `size` scores, none older than `seconds`; 0 in either: off."""

    size: int = 1000
    seconds: float = 900.0

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.seconds > 0


@dataclass(frozen=True)
class DriftFigures:
    """One window against its reference; NaN figures for an empty window."""

    n: int
    psi: float
    ks: float
    above: dict[float, float]  # reference quantile -> share of window scores above it


class Reference:
    """A model's sorted held-out normal scores, with the decile bins and quantiles drift uses."""

    def __init__(self, scores: list[float]) -> None:
        self.sorted = np.asarray(scores, dtype=np.float64)
        self.edges = np.quantile(self.sorted, DECILE_EDGES)
        self.expected = np.bincount(self._bins(self.sorted), minlength=10) / self.sorted.size
        self.quantiles = {q: float(np.quantile(self.sorted, q)) for q in ABOVE_QUANTILES}

    def _bins(self, scores: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, scores, side="right")

    def psi(self, window: np.ndarray) -> float:
        """Population stability index: sum over the bins of (a - e) ln(a / e)."""
        actual = np.bincount(self._bins(window), minlength=10) / window.size
        a, e = np.maximum(actual, PSI_FLOOR), np.maximum(self.expected, PSI_FLOOR)
        return float(np.sum((a - e) * np.log(a / e)))

    def ks(self, window_sorted: np.ndarray) -> float:
        """Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
        points = np.concatenate([self.sorted, window_sorted])
        ref_cdf = np.searchsorted(self.sorted, points, side="right") / self.sorted.size
        win_cdf = np.searchsorted(window_sorted, points, side="right") / window_sorted.size
        return float(np.max(np.abs(ref_cdf - win_cdf)))

    def compare(self, window: np.ndarray) -> DriftFigures:
        if window.size == 0:
            return DriftFigures(0, math.nan, math.nan, dict.fromkeys(ABOVE_QUANTILES, math.nan))
        ordered = np.sort(window)
        above = {
            q: float(1.0 - np.searchsorted(ordered, v, side="right") / ordered.size)
            for q, v in self.quantiles.items()
        }
        return DriftFigures(int(window.size), self.psi(window), self.ks(ordered), above)


class ScoreWindow:
    """The last `size` scores and their arrival times, in two fixed numpy rings."""

    def __init__(self, size: int) -> None:
        self._scores = np.zeros(size, dtype=np.float64)
        self._times = np.zeros(size, dtype=np.float64)
        self._next = 0
        self._count = 0
        self._lock = threading.Lock()

    def add(self, scores: np.ndarray, now: float) -> None:
        size = self._scores.size
        scores = scores[-size:]
        slots = (self._next + np.arange(scores.size)) % size
        with self._lock:
            self._scores[slots] = scores
            self._times[slots] = now
            self._next = (self._next + scores.size) % size
            self._count = min(self._count + scores.size, size)

    def since(self, oldest: float) -> np.ndarray:
        """The window's scores that arrived at `oldest` or later (a copy)."""
        with self._lock:
            count = self._count
            scores, times = self._scores[:count], self._times[:count]
            return scores[times >= oldest].copy()


@dataclass
class _Watched:
    reference: Reference
    window: ScoreWindow


class DriftMonitor:
    """The windows of the versions served whose model file has a reference."""

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings
        self._watched: dict[tuple[str, str], _Watched] = {}
        self._last_refresh = time.monotonic()

    def watch(self, name: str, version: str, reference: list[float] | None) -> bool:
        """Starts a window for a version (kept if it has one); False: drift is off for it."""
        if not self.settings.enabled or reference is None:
            return False
        if (name, version) not in self._watched:
            self._watched[(name, version)] = _Watched(
                Reference(reference), ScoreWindow(self.settings.size)
            )
        return True

    def forget(self, name: str, version: str) -> None:
        self._watched.pop((name, version), None)

    def add(self, name: str, version: str, scores: np.ndarray) -> bool:
        """Adds a request's scores; True when the figures are due for a refresh."""
        watched = self._watched.get((name, version))
        if watched is None:
            return False
        now = time.monotonic()
        watched.window.add(scores, now)
        if now - self._last_refresh < REFRESH_S:
            return False
        self._last_refresh = now
        return True

    def figures(self) -> list[tuple[str, str, DriftFigures]]:
        """Each watched version's window, as it stands now, against its reference."""
        oldest = time.monotonic() - self.settings.seconds
        return [
            (name, version, watched.reference.compare(watched.window.since(oldest)))
            for (name, version), watched in list(self._watched.items())
        ]
