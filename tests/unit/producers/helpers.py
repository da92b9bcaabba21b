"""Small synthetic recordings for the replay tests (no files, no Kafka)."""

from __future__ import annotations

import numpy as np

from wearmon.signals.types import ACCEL_UNIT, GYRO_UNIT, LabelSpan, Recording, SensorSeries

T0 = 1_700_000_000_010  # not on the 20 ms grid on purpose (phase 10 ms)


def make_rec(
    n: int = 500,
    *,
    period_ms: int = 20,
    t0: int = T0,
    seed: int = 0,
    subject: str = "1",
    labels: bool = True,
) -> Recording:
    rng = np.random.default_rng(seed)
    t = t0 + period_ms * np.arange(n, dtype=np.int64)
    acc = SensorSeries("accel", t, rng.normal(0, 3, size=(n, 3)), ACCEL_UNIT)
    gyr = SensorSeries("gyro", t + 3, rng.normal(0, 50, size=(n, 3)), GYRO_UNIT)
    spans: tuple[LabelSpan, ...] = ()
    if labels:
        mid = int(t[n // 2])
        spans = (LabelSpan(int(t[0]), mid, "A"), LabelSpan(mid, int(t[-1]) + period_ms, "B"))
    return Recording(accel=acc, gyro=gyr, labels=spans, subject=subject, source="synthetic")
