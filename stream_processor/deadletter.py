"""Validation of incoming sample messages and their dead-letter classification.

:func:`check_samples` returns the decoded batch or raises :class:`BadMessage` with a one-line
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
    peak = float(np.abs(xyz).max())
    if peak > limit:
        raise BadMessage(
            f"impossible {msg.sensor} value {peak:.1f} {msg.unit} (limit {limit:.0f})",
            "impossible_value",
        )
    now = int(time.time() * 1000) if now_ms is None else now_ms
    t = np.asarray(msg.t_ms, dtype=np.int64)
    if int(t.min()) < MIN_T_MS or int(t.max()) > now + FUTURE_SLACK_MS:
        raise BadMessage(
            f"sample time out of range ({int(t.min())}..{int(t.max())} ms)", "bad_time"
        )
    return msg


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
