"""Validation of incoming sample messages and their dead-letter classification.

:func:`check_samples` (and :func:`check_arrays`, which also returns the values as arrays)
returns the decoded batch or raises :class:`BadMessage` with a one-line
reason (it goes into the dead letter) and a short fixed ``kind`` (the metric label).
"""

from __future__ import annotations

import time

import numpy as np

from wearmon.errors import SchemaError
from wearmon.schemas import DeadLetter, SampleBatch, decode_samples, encode

#: Physical limits beyond which a value is impossible for a wrist-worn IMU.
MAX_ACCEL_MS2 = 32 * 9.80665  # 32 g
MAX_GYRO_DPS = 5000.0
#: Sample times must lie in [2000-01-01, now + 1 day].
MIN_T_MS = 946_684_800_000
FUTURE_SLACK_MS = 24 * 3600 * 1000

KINDS = (
    "undecodable",
    "schema_version",
    "empty",
    "lengths",
    "unit",
    "non_finite",
    "impossible_value",
    "bad_time",
    "bad_key",
)


class BadMessage(SchemaError):
    """A message that goes to the dead-letter topic."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def _kind_of(reason: str) -> str:
    r = reason.lower()
    if "schema version" in r:
        return "schema_version"
    if "holds no samples" in r or "empty device" in r:
        return "empty"
    if "lengths differ" in r:
        return "lengths"
    if "unit" in r:
        return "unit"
    if "non-finite" in r:
        return "non_finite"
    return "undecodable"


def check_samples(
    raw: bytes | None, key: bytes | None = None, now_ms: int | None = None
) -> SampleBatch:
    """Decode + validate one sample message; BadMessage (reason, kind) on anything wrong."""
    return check_arrays(raw, key, now_ms)[0]


def check_arrays(
    raw: bytes | None, key: bytes | None = None, now_ms: int | None = None
) -> tuple[SampleBatch, np.ndarray, np.ndarray]:
    """:func:`check_samples`, also returning the sample times (int64, n) and values
    (float64, n x 3) as arrays, built once for the check and reused by the windower.

    Non-finite values cannot get this far: JSON has no NaN or infinity and msgspec rejects
    numbers out of float range (undecodable). So one vectorised range check is all."""
    if raw is None:
        raise BadMessage("message has no value", "undecodable")
    try:
        msg = decode_samples(raw)
    except SchemaError as exc:
        raise BadMessage(str(exc), _kind_of(str(exc))) from None
    if key is not None and key.decode("utf-8", "replace") != msg.device:
        raise BadMessage("message key does not match its device id", "bad_key")
    limit = MAX_ACCEL_MS2 if msg.sensor == "accel" else MAX_GYRO_DPS
    xyz = np.array((msg.x, msg.y, msg.z), dtype=np.float64)
    hi, lo = float(xyz.max()), float(xyz.min())
    if hi > limit or -lo > limit or hi != hi or lo != lo:
        peak = max(abs(hi), abs(lo))
        raise BadMessage(
            f"impossible {msg.sensor} value {peak:.1f} {msg.unit} (limit {limit:.0f})",
            "impossible_value",
        )
    now = int(time.time() * 1000) if now_ms is None else now_ms
    tl = msg.t_ms
    t0, t1 = min(tl), max(tl)
    if t0 < MIN_T_MS or t1 > now + FUTURE_SLACK_MS:
        raise BadMessage(f"sample time out of range ({t0}..{t1} ms)", "bad_time")
    return msg, np.array(tl, dtype=np.int64), xyz.T


def dead_letter(source_topic: str, raw: bytes | None, key: bytes | None, reason: str) -> bytes:
    """The encoded dead-letter record (raw bytes kept as they came)."""
    return encode(
        DeadLetter(
            source_topic=source_topic,
            reason=reason,
            raw=raw or b"",
            key=None if key is None else key.decode("utf-8", "replace"),
            received_ms=int(time.time() * 1000),
        )
    )
