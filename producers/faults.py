"""Fault injection: pure, seeded functions on one sensor's batch plan.

A device's plan per recording is: sample timestamps (jitter, skew act on them), then batches
(gaps and drops remove some, reordering permutes their send order, duplicates repeat some).
"""

from __future__ import annotations

import numpy as np

#: ids of the independent random streams, one per kind of injection
STREAMS = {"jitter": 1, "drop": 2, "duplicate": 3, "reorder": 4, "gaps": 5, "noise": 6}


def rng_for(seed: int, device_index: int, kind: str) -> np.random.Generator:
    """The random stream of one kind of injection on one device."""
    return np.random.default_rng([seed, device_index, STREAMS[kind]])


def jitter(t_ms: np.ndarray, bound_ms: int, rng: np.random.Generator) -> np.ndarray:
    """Each timestamp moved by a uniform integer in [-bound, bound], then made strictly
    increasing again (a sample never overtakes its predecessor in its own sensor)."""
    if bound_ms <= 0 or t_ms.shape[0] == 0:
        return t_ms
    moved = t_ms + rng.integers(-bound_ms, bound_ms + 1, size=t_ms.shape[0])
    idx = np.arange(t_ms.shape[0], dtype=np.int64)
    return np.maximum.accumulate(moved - idx) + idx


def bernoulli(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of ``n`` independent draws with probability ``p`` (no draw when p = 0)."""
    if p <= 0.0:
        return np.zeros(n, dtype=bool)
    return rng.random(n) < p


def bounded_permutation(n: int, bound: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation in which no element moves more than ``bound`` places.

    Sorting ``i + u_i`` with ``u_i`` uniform in [0, bound + 1): ``j > i`` can only come
    before ``i`` when ``j - i < u_i - u_j < bound + 1``.
    """
    if bound <= 0 or n <= 1:
        return np.arange(n)
    keys = np.arange(n) + rng.uniform(0.0, bound + 1.0, size=n)
    return np.argsort(keys, kind="stable")


class GapClock:
    """Gaps on one device's timeline: exponential spacing (mean ``every_ms``), length
    ``len_ms`` each, generated lazily and deterministically as the timeline advances."""

    def __init__(self, every_ms: float, len_ms: float, rng: np.random.Generator) -> None:
        self.every_ms = every_ms
        self.len_ms = len_ms
        self.rng = rng
        self.starts: list[float] = []
        self._next = float(rng.exponential(every_ms)) if every_ms > 0 else np.inf

    def _extend(self, until: float) -> None:
        while self._next <= until:
            self.starts.append(self._next)
            self._next += self.len_ms + float(self.rng.exponential(self.every_ms))

    def in_gap(self, due_ms: np.ndarray) -> np.ndarray:
        """Mask of the timeline positions that fall inside a gap."""
        if self.every_ms <= 0 or due_ms.shape[0] == 0:
            return np.zeros(due_ms.shape[0], dtype=bool)
        self._extend(float(due_ms.max()))
        if not self.starts:
            return np.zeros(due_ms.shape[0], dtype=bool)
        starts = np.asarray(self.starts)
        k = np.searchsorted(starts, due_ms, side="right") - 1
        ok = k >= 0
        res = np.zeros(due_ms.shape[0], dtype=bool)
        res[ok] = due_ms[ok] < starts[k[ok]] + self.len_ms
        return res

    def intervals(self) -> list[tuple[float, float]]:
        return [(s, s + self.len_ms) for s in self.starts]
