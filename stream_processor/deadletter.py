"""Validation of incoming sample messages and their dead-letter classification.

:func:`check_samples` (and :func:`check_arrays`, which also returns the values as arrays)
returns the decoded batch or raises :class:`BadMessage` with a one-line
reason (it goes into the dead letter) and a short fixed ``kind`` (the metric label).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from wearmon.errors import SchemaError
from wearmon.schemas import (
    DEADLETTER_MAX_KEY_CHARS,
    MAX_FUTURE_SKEW_MS,
    MAX_MESSAGE_BYTES,
    MIN_T_MS,
    SampleBatch,
    dead_letter_of,
    decode_samples,
    encode,
)

log = logging.getLogger(__name__)

#: Physical limits beyond which a value is impossible for a wrist-worn IMU.
MAX_ACCEL_MS2 = 32 * 9.80665  # 32 g
MAX_GYRO_DPS = 5000.0

KINDS = (
    "undecodable",
    "schema_version",
    "empty",
    "lengths",
    "unit",
    "non_finite",
    "impossible_value",
    "bad_time",
    "future",
    "bad_key",
    "no_key",
    "bad_device",
    "too_large",
    "label",  # a label segment that cannot be decoded or stored
    "batch_failed",  # windows of a device isolated from a batch that kept failing
)


class BadMessage(SchemaError):
    """A message that goes to the dead-letter topic."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def _kind_of(reason: str) -> str:
    r = reason.lower()
    if "$.device" in r:
        return "bad_device"
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
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadMessage(
            f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES} bytes", "too_large"
        )
    if key is None:
        raise BadMessage("message has no key (the device id is the key)", "no_key")
    try:
        msg = decode_samples(raw)
    except SchemaError as exc:
        raise BadMessage(str(exc), _kind_of(str(exc))) from None
    if key.decode("utf-8", "replace") != msg.device:
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
    if t0 < MIN_T_MS:
        raise BadMessage(f"sample time out of range ({t0}..{t1} ms)", "bad_time")
    if t1 > now + MAX_FUTURE_SKEW_MS:
        raise BadMessage(
            f"sample time {t1} ms is {t1 - now} ms in the future "
            f"(at most {MAX_FUTURE_SKEW_MS} ms ahead of the worker's clock)",
            "future",
        )
    return msg, np.array(tl, dtype=np.int64), xyz.T


def dead_letter(source_topic: str, raw: bytes | None, key: bytes | None, reason: str) -> bytes:
    """The encoded dead-letter record (raw bytes as they came, cut to
    ``DEADLETTER_MAX_RAW_BYTES`` with the original size and sha256)."""
    return encode(dead_letter_of(source_topic, raw, key, reason, int(time.time() * 1000)))


class DeadLetterSender:
    """Sends dead letters to ``topic`` through ``producer`` (confluent-kafka), counting each
    in ``metrics.deadletters{reason}`` and each that cannot be delivered (refused by the
    client or failed delivery) in ``metrics.deadletters_undelivered``."""

    def __init__(self, producer: Any, topic: str, metrics: Any) -> None:
        self.producer = producer
        self.topic = topic
        self.metrics = metrics
        # every kind's series exists from the start at 0: Prometheus sees the first dead
        # letter of a kind as an increase (a series born at 1 shows none)
        self._by_kind: dict[str, Any] = {k: metrics.deadletters.labels(reason=k) for k in KINDS}

    def send(
        self, source_topic: str, raw: bytes | None, key: bytes | None, reason: str, kind: str
    ) -> None:
        value = dead_letter(source_topic, raw, key, reason)
        k = None if key is None else key[:DEADLETTER_MAX_KEY_CHARS]
        try:
            self.producer.produce(self.topic, key=k, value=value, on_delivery=self._delivered)
        except Exception as exc:  # BufferError, KafkaException: the letter is lost, counted
            self._lost(str(exc))
        c = self._by_kind.get(kind)
        if c is None:
            c = self._by_kind[kind] = self.metrics.deadletters.labels(reason=kind)
        c.inc()

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._lost(err.str() if hasattr(err, "str") else str(err))

    def _lost(self, why: str) -> None:
        self.metrics.deadletters_undelivered.inc()
        log.error("dead letter to %s not delivered: %s", self.topic, why)
