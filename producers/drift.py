"""Drift injection: pure functions on one sensor's samples (canonical units).

Every function takes the samples and a boolean mask (or index) of the samples at or after
the drift point and returns new arrays; inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wearmon.signals.types import GRID_MS, LabelSpan, Recording


def apply_gain_offset(xyz: np.ndarray, mask: np.ndarray, gain: float, offset: float) -> np.ndarray:
    out = xyz.copy()
    out[mask] = out[mask] * gain + offset
    return out


def apply_noise(
    xyz: np.ndarray, mask: np.ndarray, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    out = xyz.copy()
    n = int(mask.sum())
    out[mask] = out[mask] + rng.normal(0.0, sigma, size=(n, 3))
    return out


def apply_axes(xyz: np.ndarray, mask: np.ndarray, axes: Sequence[tuple[int, float]]) -> np.ndarray:
    """Output axis ``i`` = sign_i * input axis ``src_i`` (see ``config.parse_axes``)."""
    out = xyz.copy()
    sub = xyz[mask]
    for i, (src, sign) in enumerate(axes):
        out[mask, i] = sign * sub[:, src]
    return out


def resample_from(
    t_ms: np.ndarray, xyz: np.ndarray, start: int, rate_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Samples from index ``start`` on replaced by a linear resampling at ``rate_hz``."""
    if start >= t_ms.shape[0]:
        return t_ms, xyz
    t0, t1 = int(t_ms[start]), int(t_ms[-1])
    period = 1000.0 / rate_hz
    n = int(np.floor((t1 - t0) / period)) + 1
    tn = np.unique(np.rint(t0 + period * np.arange(n)).astype(np.int64))
    tail = np.stack([np.interp(tn, t_ms[start:], xyz[start:, c]) for c in range(3)], axis=1)
    return np.concatenate([t_ms[:start], tn]), np.concatenate([xyz[:start], tail])


@dataclass(frozen=True)
class Donor:
    """Other recordings strung into one cyclic source of values and labels (relative ms)."""

    t: dict[str, np.ndarray]
    xyz: dict[str, np.ndarray]
    labels: tuple[LabelSpan, ...]
    length_ms: int

    @classmethod
    def from_recordings(cls, recs: Sequence[Recording]) -> Donor:
        ts: dict[str, list[np.ndarray]] = {"accel": [], "gyro": []}
        vs: dict[str, list[np.ndarray]] = {"accel": [], "gyro": []}
        labels: list[LabelSpan] = []
        cursor = 0
        for rec in recs:
            t0 = min(int(rec.accel.t_ms[0]), int(rec.gyro.t_ms[0]))
            t1 = max(int(rec.accel.t_ms[-1]), int(rec.gyro.t_ms[-1]))
            for s in (rec.accel, rec.gyro):
                ts[s.sensor].append(s.t_ms - t0 + cursor)
                vs[s.sensor].append(s.xyz)
            labels.extend(
                LabelSpan(sp.start_ms - t0 + cursor, sp.end_ms - t0 + cursor, sp.label)
                for sp in rec.labels
            )
            cursor += t1 - t0 + GRID_MS
        return cls(
            t={k: np.concatenate(v) for k, v in ts.items()},
            xyz={k: np.concatenate(v) for k, v in vs.items()},
            labels=tuple(labels),
            length_ms=cursor,
        )

    def values(self, sensor: str, rel_ms: np.ndarray) -> np.ndarray:
        """Donor values at ``rel_ms`` since the drift point (cyclic, linear interpolation)."""
        d = np.mod(rel_ms, self.length_ms)
        t, v = self.t[sensor], self.xyz[sensor]
        return np.stack([np.interp(d, t, v[:, c]) for c in range(3)], axis=1)

    def labels_between(self, rel_start: int, rel_end: int) -> list[LabelSpan]:
        """Donor label spans (relative to the drift point) overlapping [rel_start, rel_end)."""
        out: list[LabelSpan] = []
        if not self.labels or rel_end <= rel_start:
            return out
        k = max(0, rel_start // self.length_ms)
        while k * self.length_ms < rel_end:
            base = k * self.length_ms
            for sp in self.labels:
                a, b = sp.start_ms + base, sp.end_ms + base
                if b > rel_start and a < rel_end:
                    out.append(LabelSpan(max(a, rel_start), min(b, rel_end), sp.label))
            k += 1
        return out


def replace_values(
    xyz: np.ndarray, mask: np.ndarray, rel_ms: np.ndarray, donor: Donor, sensor: str
) -> np.ndarray:
    out = xyz.copy()
    if mask.any():
        out[mask] = donor.values(sensor, rel_ms[mask])
    return out
