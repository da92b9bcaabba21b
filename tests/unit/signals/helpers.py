"""Synthetic sensor data for the signal tests."""

from __future__ import annotations

import numpy as np

from wearmon.signals.types import SensorSeries


def jittered_times(rng: np.random.Generator, start: int, n: int, mean_dt: int = 10) -> np.ndarray:
    dt = rng.integers(max(1, mean_dt - 3), mean_dt + 4, size=n)
    return start + np.cumsum(dt).astype(np.int64)


def series(
    rng: np.random.Generator, sensor: str, start: int, n: int, mean_dt: int = 10
) -> SensorSeries:
    t = jittered_times(rng, start, n, mean_dt)
    base = np.array([0.0, 0.0, 9.8]) if sensor == "accel" else np.zeros(3)
    xyz = base + rng.normal(0, 1.0, size=(n, 3))
    return SensorSeries(sensor, t, xyz, "m/s2" if sensor == "accel" else "deg/s")
