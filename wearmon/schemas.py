"""Message schemas, defined once for the producer, the stream processor and the monitor.

Every message is a versioned ``msgspec.Struct`` serialised as JSON by the one codec below.
Decoding validates types (JSON carries no NaN or infinity, and msgspec rejects numbers out of
float range, so every decoded value is finite); :func:`decode_samples` also checks the semantic
rules (equal list lengths, canonical unit, known sensor) and raises
:class:`~wearmon.errors.SchemaError` with a one-line reason that goes into the dead-letter topic.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

from wearmon.errors import SchemaError

SCHEMA_VERSION = 1

Sensor = Literal["accel", "gyro"]
#: Canonical units on the wire and in memory (docs/signals.md, "Units").
CANONICAL_UNITS: dict[str, str] = {"accel": "m/s2", "gyro": "deg/s"}


class SampleBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One batch of samples of one sensor of one device (topic ``wearmon.samples``)."""

    v: int = SCHEMA_VERSION
    device: str
    sensor: Sensor
    t_ms: list[int]
    x: list[float]
    y: list[float]
    z: list[float]
    unit: str
    sent_ms: int = 0
    seq: int = 0


class LabelSegment(msgspec.Struct, frozen=True, kw_only=True):
    """Ground truth for a time segment of one device (topic ``wearmon.labels``)."""

    v: int = SCHEMA_VERSION
    device: str
    start_ms: int
    end_ms: int
    label: str


class Prediction(msgspec.Struct, frozen=True, kw_only=True):
    """One classified window (topic ``wearmon.predictions`` and Redis)."""

    v: int = SCHEMA_VERSION
    device: str
    window_start_ms: int
    window_end_ms: int
    label: str
    confidence: float
    probs: list[float]
    model_version: str
    processed_ms: int
    latency_ms: float | None = None


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message that could not be processed, with the reason (topic ``wearmon.deadletter``)."""

    v: int = SCHEMA_VERSION
    source_topic: str
    reason: str
    raw: bytes  # base64 in JSON
    key: str | None = None
    received_ms: int = 0


_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in (SampleBatch, LabelSegment, Prediction, DeadLetter)
}

M = TypeVar("M", SampleBatch, LabelSegment, Prediction, DeadLetter)


def encode(msg: msgspec.Struct) -> bytes:
    """The one serializer for every wearmon message."""
    return _encoder.encode(msg)


def _decode(raw: bytes, kind: type[M], what: str) -> M:
    """Decode one message of ``kind``, checking its schema version; SchemaError otherwise."""
    try:
        msg: M = _decoders[kind].decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SchemaError(f"undecodable {what} message: {exc}") from None
    if msg.v != SCHEMA_VERSION:
        raise SchemaError(f"unsupported schema version {msg.v} (this build reads {SCHEMA_VERSION})")
    return msg


def decode_samples(raw: bytes) -> SampleBatch:
    """Decode and validate a ``wearmon.samples`` message; SchemaError on anything wrong."""
    msg = _decode(raw, SampleBatch, "sample")
    n = len(msg.t_ms)
    if n == 0:
        raise SchemaError("sample message holds no samples")
    if not (len(msg.x) == len(msg.y) == len(msg.z) == n):
        raise SchemaError(
            f"list lengths differ: t_ms={n} x={len(msg.x)} y={len(msg.y)} z={len(msg.z)}"
        )
    if msg.unit != CANONICAL_UNITS[msg.sensor]:
        raise SchemaError(
            f"{msg.sensor} unit {msg.unit!r} is not canonical {CANONICAL_UNITS[msg.sensor]!r}"
        )
    if not msg.device:
        raise SchemaError("empty device id")
    return msg


def decode_labels(raw: bytes) -> LabelSegment:
    msg = _decode(raw, LabelSegment, "label")
    if msg.end_ms <= msg.start_ms:
        raise SchemaError(f"label segment ends ({msg.end_ms}) before it starts ({msg.start_ms})")
    return msg


def decode_prediction(raw: bytes) -> Prediction:
    return _decode(raw, Prediction, "prediction")


def decode_deadletter(raw: bytes) -> DeadLetter:
    return _decode(raw, DeadLetter, "dead-letter")
