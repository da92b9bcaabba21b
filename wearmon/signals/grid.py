"""Fusion of accelerometer and gyroscope onto the common 50 Hz grid.

Grid points are the multiples of :data:`GRID_MS` (20 ms) since the epoch inside the time span
both sensors cover. Each sensor is linearly interpolated onto the grid from its two
neighbouring samples (the last sample at or before the point and the first after it). A grid
point is *invalid* when, for either sensor, those two neighbours are more than ``max_gap_ms``
apart (a gap: no interpolation across it), unless a sample falls exactly on the point.

The value at a grid point depends only on its two neighbouring samples, computed with one
fixed float64 formula and cast to float32 once; this is what lets the incremental windower
(:mod:`wearmon.signals.stream`) reproduce the batch result bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wearmon.signals.types import CHANNELS, GRID_MS, SensorSeries

DEFAULT_MAX_GAP_MS = 100


@dataclass(frozen=True)
class Grid:
    """Fused samples on the 20 ms grid: contiguous grid points, channels Ax..Gz."""

    t_ms: np.ndarray  # int64 (n,), consecutive multiples of GRID_MS
    values: np.ndarray  # float32 (n, 6), CHANNELS order, canonical units
    valid: np.ndarray  # bool (n,)

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])

    @classmethod
    def empty(cls) -> Grid:
        return cls(
            t_ms=np.empty(0, dtype=np.int64),
            values=np.empty((0, len(CHANNELS)), dtype=np.float32),
            valid=np.empty(0, dtype=bool),
        )


def grid_points(start_ms: int, end_ms: int) -> np.ndarray:
    """All multiples of GRID_MS in [start_ms, end_ms], int64."""
    first = -(-int(start_ms) // GRID_MS) * GRID_MS
    last = (int(end_ms) // GRID_MS) * GRID_MS
    if last < first:
        return np.empty(0, dtype=np.int64)
    return np.arange(first, last + GRID_MS, GRID_MS, dtype=np.int64)


def interpolate_sensor(
    t_ms: np.ndarray, xyz: np.ndarray, points: np.ndarray, max_gap_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of one sensor at ``points`` (all within [t_ms[0], t_ms[-1]]).

    ``t_ms`` must be sorted and unique. Returns (values float64 (m, 3), valid bool (m,)).
    """
    n = t_ms.shape[0]
    i = np.searchsorted(t_ms, points, side="right") - 1
    np.clip(i, 0, n - 1, out=i)
    j = np.minimum(i + 1, n - 1)
    tl = t_ms[i]
    tr = t_ms[j]
    span = tr - tl
    off = points - tl
    exact = off == 0
    # span == 0 only at the last sample, where off == 0 too: w = 0 / 1 = 0
    w = off / np.where(span == 0, 1, span)
    vl = xyz[i]
    vals = vl + (xyz[j] - vl) * w[:, None]
    valid = exact | (span <= max_gap_ms)
    return vals, valid


def fuse_to_grid(
    accel: SensorSeries, gyro: SensorSeries, *, max_gap_ms: int = DEFAULT_MAX_GAP_MS
) -> Grid:
    """Interpolate both sensors onto the 20 ms grid over the span both cover."""
    if len(accel) == 0 or len(gyro) == 0:
        return Grid.empty()
    ta = np.asarray(accel.t_ms, dtype=np.int64)
    tg = np.asarray(gyro.t_ms, dtype=np.int64)
    start = max(int(ta[0]), int(tg[0]))
    end = min(int(ta[-1]), int(tg[-1]))
    points = grid_points(start, end)
    if points.size == 0:
        return Grid.empty()
    return fuse_points(
        ta,
        np.asarray(accel.xyz, dtype=np.float64),
        tg,
        np.asarray(gyro.xyz, dtype=np.float64),
        points,
        max_gap_ms,
    )


def fuse_points(
    ta: np.ndarray,
    xa: np.ndarray,
    tg: np.ndarray,
    xg: np.ndarray,
    points: np.ndarray,
    max_gap_ms: int,
) -> Grid:
    """Fuse at given grid points (the shared kernel of the batch and incremental paths)."""
    va, oka = interpolate_sensor(ta, xa, points, max_gap_ms)
    vg, okg = interpolate_sensor(tg, xg, points, max_gap_ms)
    values = np.empty((points.shape[0], len(CHANNELS)), dtype=np.float32)
    values[:, :3] = va
    values[:, 3:] = vg
    return Grid(t_ms=points, values=values, valid=oka & okg)
