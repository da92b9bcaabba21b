"""Message schemas, defined once for the producer, the stream processor and the monitor.

Every message is a versioned ``msgspec.Struct`` serialised as JSON by the one codec below.
Decoding validates types (JSON carries no NaN or infinity, and msgspec rejects numbers out of
float range, so every decoded value is finite); :func:`decode_samples` also checks the semantic
rules (equal list lengths, canonical unit, known sensor) and raises
:class:`~wearmon.errors.SchemaError` with a one-line reason that goes into the dead-letter topic.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from wearmon.errors import SchemaError

SCHEMA_VERSION = 1

Sensor = Literal["accel", "gyro"]

# ---------------------------------------------------------------- input rules (docs/stream.md)
#: A device id: 1 to 128 characters of ``[A-Za-z0-9._:-]``. It becomes part of Redis
#: key names and of the Kafka key of every prediction, so it is short and printable.
DEVICE_ID_MAX_LEN = 128
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}\Z"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
DeviceId = Annotated[str, msgspec.Meta(pattern=DEVICE_ID_PATTERN)]
#: The largest sample or label message accepted (a producer batch of 25 samples is ~2 KB).
MAX_MESSAGE_BYTES = 256 * 1024
#: How far ahead of the worker's clock a sample (or the end of a label segment) may lie:
#: clocks of devices drift; one sample far ahead would move its device's watermark there
#: and make every later sample "late".
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
#: No sample or label before 2000-01-01.
MIN_T_MS = 946_684_800_000
#: The longest label segment accepted (one recording session).
MAX_LABEL_SPAN_MS = 24 * 3600 * 1000
#: A dead letter carries at most this much of the raw message (plus its size and sha256),
#: and at most this much of its key: it must fit the broker's message size (1 MB default).
DEADLETTER_MAX_RAW_BYTES = 64 * 1024
DEADLETTER_MAX_KEY_CHARS = 256


def check_device_id(device: str) -> str:
    """``device`` if it follows the device-id rule; SchemaError otherwise."""
    if not _DEVICE_ID_RE.match(device):
        shown = device[:40] + ("..." if len(device) > 40 else "")
        raise SchemaError(
            f"device id {shown!r} ({len(device)} chars) must be 1-{DEVICE_ID_MAX_LEN} "
            "characters of A-Z a-z 0-9 . _ : -"
        )
    return device


def check_message_size(raw: bytes) -> None:
    """SchemaError when a message is larger than :data:`MAX_MESSAGE_BYTES`."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise SchemaError(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")


#: Canonical units on the wire and in memory (docs/signals.md, "Units").
CANONICAL_UNITS: dict[str, str] = {"accel": "m/s2", "gyro": "deg/s"}


class SampleBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One batch of samples of one sensor of one device (topic ``wearmon.samples``)."""

    v: int = SCHEMA_VERSION
    device: DeviceId
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
    device: DeviceId
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
    raw: bytes  # base64 in JSON; at most DEADLETTER_MAX_RAW_BYTES of the message
    key: str | None = None
    received_ms: int = 0
    raw_size: int = 0  # size of the whole message
    raw_sha256: str = ""  # of the whole message
    truncated: bool = False


def dead_letter_of(
    source_topic: str, raw: bytes | None, key: bytes | None, reason: str, received_ms: int
) -> DeadLetter:
    """The dead letter of a message: raw bytes and key cut to what a Kafka message can
    carry, with the original size and sha256."""
    raw = raw or b""
    k = None if key is None else key[: DEADLETTER_MAX_KEY_CHARS * 4].decode("utf-8", "replace")
    return DeadLetter(
        source_topic=source_topic,
        reason=reason,
        raw=raw[:DEADLETTER_MAX_RAW_BYTES],
        key=None if k is None else k[:DEADLETTER_MAX_KEY_CHARS],
        received_ms=received_ms,
        raw_size=len(raw),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        truncated=len(raw) > DEADLETTER_MAX_RAW_BYTES,
    )


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


def decode_labels(raw: bytes, now_ms: int | None = None) -> LabelSegment:
    """Decode and validate a ``wearmon.labels`` message: a segment of at most
    :data:`MAX_LABEL_SPAN_MS`, ending at most :data:`MAX_FUTURE_SKEW_MS` after
    ``now_ms`` (when given); SchemaError otherwise."""
    check_message_size(raw)
    msg = _decode(raw, LabelSegment, "label")
    if msg.end_ms <= msg.start_ms:
        raise SchemaError(f"label segment ends ({msg.end_ms}) before it starts ({msg.start_ms})")
    if msg.end_ms - msg.start_ms > MAX_LABEL_SPAN_MS:
        raise SchemaError(f"label segment {msg.start_ms}..{msg.end_ms} ms out of range")
    if now_ms is not None and msg.end_ms > now_ms + MAX_FUTURE_SKEW_MS:
        raise SchemaError(f"label segment ends {msg.end_ms - now_ms} ms in the future")
    return msg


def decode_prediction(raw: bytes) -> Prediction:
    return _decode(raw, Prediction, "prediction")


def decode_deadletter(raw: bytes) -> DeadLetter:
    return _decode(raw, DeadLetter, "dead-letter")
