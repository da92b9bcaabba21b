"""Pacing arithmetic: replay timeline positions to wall-clock times, and lag statistics."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass
class Pacer:
    """Maps a timeline position (ms since the replay started) to the wall time it is due.

    ``speed`` is a factor of real time (10 = ten times faster); ``math.inf`` means no pacing.
    ``start`` is the wall clock (``time.monotonic()`` seconds) of timeline position 0.
    """

    speed: float
    start: float

    @property
    def paced(self) -> bool:
        return math.isfinite(self.speed)

    def due_at(self, due_ms: float) -> float:
        if not self.paced:
            return self.start
        return self.start + due_ms / 1000.0 / self.speed

    def wait_s(self, due_ms: float, now: float) -> float:
        """Seconds to wait until ``due_ms`` is due (<= 0: due now or late)."""
        return self.due_at(due_ms) - now

    def position_ms(self, now: float) -> float:
        """The timeline position that is due at wall time ``now`` (inf when unpaced)."""
        if not self.paced:
            return math.inf
        return (now - self.start) * 1000.0 * self.speed


@dataclass
class LagStats:
    """Send lag (actual send time minus due time, seconds): exact max, reservoir quantiles."""

    capacity: int = 100_000
    seed: int = 0
    count: int = 0
    max_s: float = 0.0
    _sample: list[float] = field(default_factory=list)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def add(self, lag_s: float) -> None:
        self.count += 1
        if lag_s > self.max_s:
            self.max_s = lag_s
        if len(self._sample) < self.capacity:
            self._sample.append(lag_s)
        else:
            j = self._rng.randrange(self.count)
            if j < self.capacity:
                self._sample[j] = lag_s

    def quantile(self, q: float) -> float:
        if not self._sample:
            return 0.0
        s = sorted(self._sample)
        k = min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))
        return s[k]
