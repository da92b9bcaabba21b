"""Canonical in-memory forms of wearable data (docs/signals.md).

- time: int64 epoch milliseconds, UTC, per sample
- channels, in order: Ax, Ay, Az (m/s^2), Gx, Gy, Gz (deg/s)
- grid: 50 Hz (20 ms) anchored at multiples of 20 ms since the epoch
- windows: 200 samples with hop 100, anchored on the grid; id = (device, window start ms)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CHANNELS: tuple[str, ...] = ("Ax", "Ay", "Az", "Gx", "Gy", "Gz")
ACCEL_UNIT = "m/s2"
GYRO_UNIT = "deg/s"
STANDARD_GRAVITY = 9.80665  # m/s^2 per g

RATE_HZ = 50
GRID_MS = 1000 // RATE_HZ  # 20
WINDOW = 200
HOP = 100


@dataclass(frozen=True)
class SensorSeries:
    """Samples of one 3-axis sensor in canonical units, sorted by time, unique times."""

    sensor: str  # "accel" | "gyro"
    t_ms: np.ndarray  # int64, shape (n,)
    xyz: np.ndarray  # float64, shape (n, 3)
    unit: str  # canonical: "m/s2" for accel, "deg/s" for gyro
    #: int64 (n,): the source batch of each sample (a Garmin row holds ~25 samples), for
    #: formats that deliver samples in batches; None otherwise
    batch: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])


@dataclass(frozen=True)
class LabelSpan:
    """Ground truth over [start_ms, end_ms)."""

    start_ms: int
    end_ms: int
    label: str


@dataclass(frozen=True)
class Recording:
    """One session of one wearer: both sensors, optional labels, provenance."""

    accel: SensorSeries
    gyro: SensorSeries
    labels: tuple[LabelSpan, ...] = ()
    subject: str | None = None
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Windows:
    """A batch of windows, shape (n, WINDOW, 6) float32, with their grid-anchored starts."""

    start_ms: np.ndarray  # int64, shape (n,)
    x: np.ndarray  # float32, shape (n, WINDOW, 6)
    labels: np.ndarray | None = None  # object/str array, shape (n,), majority label or None
    device: str | None = None

    def __len__(self) -> int:
        return int(self.start_ms.shape[0])

    @property
    def end_ms(self) -> np.ndarray:
        return self.start_ms + WINDOW * GRID_MS
