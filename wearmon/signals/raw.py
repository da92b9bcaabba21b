"""Raw windows as bytes: how the stream keeps the windows it classified (Redis
``win:raw:{device}``, for retraining on labels that arrive later) and how the trainer reads
them back. One format: float16, little-endian, ``window x 6`` canonical units (m/s², deg/s),
2,400 bytes for a 200-sample window; float16 keeps 3 significant digits, below the noise of a
wrist IMU."""

from __future__ import annotations

import numpy as np

from wearmon.signals.types import CHANNELS

RAW_DTYPE = np.dtype("<f2")


def encode_raw_windows(x: np.ndarray) -> list[bytes]:
    """Windows (n, T, 6) -> one bytes value per window."""
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32).astype(RAW_DTYPE))
    if a.ndim != 3 or a.shape[2] != len(CHANNELS):
        raise ValueError(f"expected windows of shape (n, T, {len(CHANNELS)}), got {a.shape}")
    return [a[i].tobytes() for i in range(a.shape[0])]


def encode_raw_window(x: np.ndarray) -> bytes:
    """One window (T, 6) -> bytes."""
    return encode_raw_windows(np.asarray(x)[None])[0]


def decode_raw_window(raw: bytes, window: int) -> np.ndarray:
    """bytes -> one window (window, 6) float32; ValueError when the size does not fit."""
    x = np.frombuffer(raw, dtype=RAW_DTYPE)
    if x.size != window * len(CHANNELS):
        raise ValueError(f"{x.size} values, expected {window} x {len(CHANNELS)}")
    return x.reshape(window, len(CHANNELS)).astype(np.float32)
