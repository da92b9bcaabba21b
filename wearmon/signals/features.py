"""Per-window features for drift checks and reference profiles (docs/signals.md, "Features").

Per channel (Ax..Gz): mean, std, min, max, energy (mean of squares) and dominant frequency
(Hz, the strongest non-DC bin of the de-meaned window's spectrum). Plus the mean and std of
the accelerometer and gyroscope magnitudes. Vectorised over windows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wearmon.signals.types import CHANNELS, RATE_HZ

if TYPE_CHECKING:
    import pandas as pd

PER_CHANNEL: tuple[str, ...] = ("mean", "std", "min", "max", "energy", "domfreq")
MAGNITUDE: tuple[str, ...] = ("acc_mag_mean", "acc_mag_std", "gyro_mag_mean", "gyro_mag_std")

FEATURE_NAMES: list[str] = [f"{ch}_{stat}" for ch in CHANNELS for stat in PER_CHANNEL] + list(
    MAGNITUDE
)


def window_features(x: np.ndarray, *, rate_hz: int = RATE_HZ) -> np.ndarray:
    """Features of windows ``x`` (n, T, 6) -> float64 (n, len(FEATURE_NAMES))."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 3 or a.shape[2] != len(CHANNELS):
        raise ValueError(f"expected windows of shape (n, T, {len(CHANNELS)}), got {a.shape}")
    n, t, c = a.shape
    out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    if n == 0:
        return out
    mean = a.mean(axis=1)
    std = a.std(axis=1)
    mn = a.min(axis=1)
    mx = a.max(axis=1)
    energy = np.einsum("ntc,ntc->nc", a, a) / t
    spec = np.abs(np.fft.rfft(a - mean[:, None, :], axis=1))  # (n, t//2+1, c)
    freqs = np.fft.rfftfreq(t, d=1.0 / rate_hz)
    dom = freqs[1 + spec[:, 1:, :].argmax(axis=1)] if spec.shape[1] > 1 else np.zeros((n, c))
    per = np.stack([mean, std, mn, mx, energy, dom], axis=2)  # (n, c, stats)
    k = c * len(PER_CHANNEL)
    out[:, :k] = per.reshape(n, k)
    amag = np.sqrt(np.einsum("ntc,ntc->nt", a[:, :, :3], a[:, :, :3]))
    gmag = np.sqrt(np.einsum("ntc,ntc->nt", a[:, :, 3:], a[:, :, 3:]))
    out[:, k] = amag.mean(axis=1)
    out[:, k + 1] = amag.std(axis=1)
    out[:, k + 2] = gmag.mean(axis=1)
    out[:, k + 3] = gmag.std(axis=1)
    return out


def features_frame(x: np.ndarray, *, rate_hz: int = RATE_HZ) -> pd.DataFrame:
    """:func:`window_features` as a DataFrame with FEATURE_NAMES columns."""
    import pandas as pd

    return pd.DataFrame(window_features(x, rate_hz=rate_hz), columns=FEATURE_NAMES)
