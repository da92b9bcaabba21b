from __future__ import annotations

import pytest

from stream_processor.deadletter import BadMessage, check_samples, dead_letter
from wearmon.schemas import SampleBatch, decode_deadletter, encode

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
        (_msg(t_ms=[NOW + 10 * 86_400_000]), "bad_time"),
    ],
)
def test_bad_messages_are_classified(raw: bytes | None, kind: str) -> None:
    with pytest.raises(BadMessage) as err:
        check_samples(raw, b"d1", now_ms=NOW)
    assert err.value.kind == kind
    assert "\n" not in err.value.reason


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
