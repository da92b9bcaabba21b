"""Live timestamps of a fast replay are never ahead of the wall clock when sent."""

from __future__ import annotations

import math

from producers.config import ReplayConfig
from producers.engine import live_start_ms

NOW = 1_800_000_000_000


def test_real_time_and_endless_replays_start_now() -> None:
    assert live_start_ms(NOW, 600_000, ReplayConfig(speed=1.0)) == NOW
    assert live_start_ms(NOW, None, ReplayConfig(speed=10.0, loop=True)) == NOW
    assert live_start_ms(NOW, 600_000, ReplayConfig(speed=10.0, timestamps="original")) == NOW


def test_fast_replay_starts_early_enough() -> None:
    timeline = 600_000
    for speed in (2.0, 20.0, math.inf):
        start = live_start_ms(NOW, timeline, ReplayConfig(speed=speed))
        for t in range(0, timeline + 1, 10_000):  # sample at timeline position t ...
            sent = NOW + (0 if math.isinf(speed) else t / speed)  # ... is sent then
            assert start + t <= sent + 1
    assert live_start_ms(NOW, timeline, ReplayConfig(speed=math.inf)) == NOW - timeline
