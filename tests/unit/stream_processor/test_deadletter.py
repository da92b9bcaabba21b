from __future__ import annotations

import pytest

from stream_processor.deadletter import BadMessage, check_samples, dead_letter
from wearmon.errors import SchemaError
from wearmon.schemas import (
    DEADLETTER_MAX_RAW_BYTES,
    MAX_FUTURE_SKEW_MS,
    MAX_MESSAGE_BYTES,
    LabelSegment,
    SampleBatch,
    check_device_id,
    decode_deadletter,
    decode_labels,
    encode,
)

NOW = 1_742_800_000_000


def _msg(**kw: object) -> bytes:
    base = dict(device="d1", sensor="accel", t_ms=[NOW], x=[0.1], y=[0.2], z=[9.8], unit="m/s2")
    base.update(kw)
    return encode(SampleBatch(**base))  # type: ignore[arg-type]


def test_good_message_passes() -> None:
    assert check_samples(_msg(), b"d1", now_ms=NOW).device == "d1"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"\x00garbage", "undecodable"),
        (None, "undecodable"),
        (_msg(v=2), "schema_version"),
        (_msg(t_ms=[], x=[], y=[], z=[]), "empty"),
        (_msg(x=[1.0, 2.0]), "lengths"),
        (_msg(unit="g"), "unit"),
        (_msg(x=[1e5]), "impossible_value"),
        (_msg(sensor="gyro", unit="deg/s", x=[9000.0]), "impossible_value"),
        (_msg(t_ms=[1000]), "bad_time"),
        (_msg(t_ms=[NOW + 23 * 3_600_000]), "future"),
        (_msg(t_ms=[NOW + MAX_FUTURE_SKEW_MS + 1]), "future"),
        (_msg(device="x" * 129), "bad_device"),
        (_msg(device="a b"), "bad_device"),
        (_msg(device=""), "bad_device"),
        (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "too_large"),
    ],
)
def test_bad_messages_are_classified(raw: bytes | None, kind: str) -> None:
    with pytest.raises(BadMessage) as err:
        check_samples(raw, b"d1", now_ms=NOW)
    assert err.value.kind == kind
    assert "\n" not in err.value.reason


def test_sample_just_inside_the_future_skew_passes() -> None:
    assert check_samples(_msg(t_ms=[NOW + MAX_FUTURE_SKEW_MS]), b"d1", now_ms=NOW)


def test_keyless_message_is_bad() -> None:
    with pytest.raises(BadMessage) as err:
        check_samples(_msg(), None, now_ms=NOW)
    assert err.value.kind == "no_key"


@pytest.mark.parametrize("device", ["__offset__", "dev-0a1b2c3d", "a.b:c_d-e", "x" * 128])
def test_device_id_rule_accepts(device: str) -> None:
    assert check_device_id(device) == device
    assert check_samples(_msg(device=device), device.encode(), now_ms=NOW).device == device


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (NOW, 10**19),
        (-(10**18), NOW),
        (NOW, NOW + 2 * 86_400_000),
        (NOW + 3_600_000, NOW + 3_600_001),
    ],
)
def test_label_segment_out_of_range_is_refused(start: int, end: int) -> None:
    raw = encode(LabelSegment(device="d1", start_ms=start, end_ms=end, label="REST"))
    with pytest.raises(SchemaError):
        decode_labels(raw, now_ms=NOW)


def test_label_segment_device_id_rule() -> None:
    raw = encode(LabelSegment(device="a\nb", start_ms=NOW, end_ms=NOW + 1, label="REST"))
    with pytest.raises(SchemaError):
        decode_labels(raw, now_ms=NOW)


def test_non_finite_and_key_mismatch() -> None:
    raw = _msg().replace(b"0.1", b"NaN")
    with pytest.raises(BadMessage):
        check_samples(raw, b"d1", now_ms=NOW)
    with pytest.raises(BadMessage) as err:
        check_samples(_msg(), b"other", now_ms=NOW)
    assert err.value.kind == "bad_key"


def test_dead_letter_keeps_raw_bytes_and_reason() -> None:
    dl = decode_deadletter(dead_letter("wearmon.samples", b"\x00x", b"d1", "why"))
    assert (dl.raw, dl.reason, dl.key, dl.source_topic) == (
        b"\x00x",
        "why",
        "d1",
        "wearmon.samples",
    )


def test_dead_letter_of_a_large_message_is_truncated_with_size_and_hash() -> None:
    import hashlib

    raw = bytes(range(256)) * 4000
    dl = decode_deadletter(dead_letter("wearmon.samples", raw, b"k" * 500_000, "too big"))
    assert dl.truncated and dl.raw_size == len(raw)
    assert dl.raw == raw[:DEADLETTER_MAX_RAW_BYTES]
    assert dl.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert dl.key is not None and len(dl.key) == 256
    small = decode_deadletter(dead_letter("wearmon.samples", b"ab", b"d1", "why"))
    assert not small.truncated and small.raw_size == 2


def test_undeliverable_dead_letters_are_counted() -> None:
    from stream_processor.deadletter import DeadLetterSender
    from stream_processor.metrics import StreamMetrics

    class Refusing:
        def produce(self, *a: object, **kw: object) -> None:
            raise BufferError("queue full")

    class Failing:
        def produce(self, topic: str, key: object, value: bytes, on_delivery: object) -> None:
            class Err:
                def str(self) -> str:
                    return "MSG_SIZE_TOO_LARGE"

            on_delivery(Err(), None)  # type: ignore[operator]

    m = StreamMetrics()
    for producer in (Refusing(), Failing()):
        DeadLetterSender(producer, "dl", m).send("t", b"x", b"k", "why", "undecodable")
    assert m.deadletters_undelivered._value.get() == 2
    assert m.deadletters.labels(reason="undecodable")._value.get() == 2
