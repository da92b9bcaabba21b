"""Unit detection and conversion to the canonical units (accel m/s2, gyro deg/s).

Detection looks at the median vector magnitude: a worn accelerometer mostly measures gravity,
so its median magnitude is near 1000 (milli-g), 1 (g) or 9.8 (m/s2). A gyroscope's median
magnitude is a few rad/s at most during exercise and tens of deg/s; see :func:`detect_gyro_unit`.
Every guess is logged; callers can force a unit instead.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from wearmon.errors import BadRecordingError
from wearmon.signals.types import STANDARD_GRAVITY

log = logging.getLogger(__name__)

AccelUnit = Literal["mg", "g", "m/s2"]
GyroUnit = Literal["rad/s", "deg/s"]

ACCEL_UNITS: tuple[str, ...] = ("mg", "g", "m/s2")
GYRO_UNITS: tuple[str, ...] = ("rad/s", "deg/s")

_ACCEL_FACTOR = {"mg": STANDARD_GRAVITY / 1000.0, "g": STANDARD_GRAVITY, "m/s2": 1.0}
_GYRO_FACTOR = {"rad/s": 180.0 / np.pi, "deg/s": 1.0}
_ALIASES = {
    "milli-g": "mg",
    "millig": "mg",
    "m/s^2": "m/s2",
    "ms2": "m/s2",
    "m/s²": "m/s2",
    "rad": "rad/s",
    "rads": "rad/s",
    "dps": "deg/s",
    "deg": "deg/s",
}


def _median_magnitude(xyz: np.ndarray) -> float:
    a = np.asarray(xyz, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or a.shape[0] == 0:
        raise BadRecordingError(f"expected an (n, 3) array of samples, got shape {a.shape}")
    mag = np.sqrt(np.einsum("ij,ij->i", a, a))
    mag = mag[np.isfinite(mag)]
    if mag.size == 0:
        raise BadRecordingError("no finite samples to detect the unit from")
    return float(np.median(mag))


def normalize_unit(unit: str) -> str:
    u = unit.strip().lower()
    return _ALIASES.get(u, u)


def detect_accel_unit(xyz: np.ndarray) -> AccelUnit:
    """Guess the accelerometer unit from the median magnitude (about 1000, 1 or 9.8)."""
    med = _median_magnitude(xyz)
    unit: AccelUnit
    # geometric midpoints: between 1 and 9.8 -> ~3.1, between 9.8 and 1000 -> ~99
    if 0.2 <= med < 3.1:
        unit = "g"
    elif 3.1 <= med < 99.0:
        unit = "m/s2"
    elif 99.0 <= med <= 20_000.0:
        unit = "mg"
    else:
        raise BadRecordingError(
            f"cannot tell the accelerometer unit: median magnitude {med:.4g} is not near "
            "1000 (mg), 1 (g) or 9.8 (m/s2); pass the unit explicitly",
            column="accel",
        )
    log.info("accelerometer unit guessed as %s (median magnitude %.3g)", unit, med)
    return unit


def detect_gyro_unit(xyz: np.ndarray) -> GyroUnit:
    """Guess the gyroscope unit: a wrist rarely turns faster than ~3 rad/s on median, and a
    median magnitude above that is read as deg/s. Also looks at the 99th percentile, which
    in rad/s stays below ~20 (1150 deg/s)."""
    a = np.asarray(xyz, dtype=np.float64)
    med = _median_magnitude(a)
    mag = np.sqrt(np.einsum("ij,ij->i", a, a))
    p99 = float(np.nanpercentile(mag, 99))
    unit: GyroUnit = "deg/s" if (med > 3.0 or p99 > 25.0) else "rad/s"
    log.info("gyroscope unit guessed as %s (median magnitude %.3g, p99 %.3g)", unit, med, p99)
    return unit


def accel_to_canonical(xyz: np.ndarray, unit: str) -> np.ndarray:
    """Convert accelerometer samples in ``unit`` (mg, g, m/s2) to m/s2, float64."""
    u = normalize_unit(unit)
    if u not in _ACCEL_FACTOR:
        raise BadRecordingError(f"unknown accelerometer unit {unit!r}; use one of {ACCEL_UNITS}")
    out = np.asarray(xyz, dtype=np.float64)
    f = _ACCEL_FACTOR[u]
    return out * f if f != 1.0 else out.copy()


def gyro_to_canonical(xyz: np.ndarray, unit: str) -> np.ndarray:
    """Convert gyroscope samples in ``unit`` (rad/s, deg/s) to deg/s, float64."""
    u = normalize_unit(unit)
    if u not in _GYRO_FACTOR:
        raise BadRecordingError(f"unknown gyroscope unit {unit!r}; use one of {GYRO_UNITS}")
    out = np.asarray(xyz, dtype=np.float64)
    f = _GYRO_FACTOR[u]
    return out * f if f != 1.0 else out.copy()
