from __future__ import annotations

import json

import pytest

from wearmon.errors import SchemaError
from wearmon.schemas import (
    SCHEMA_VERSION,
    DeadLetter,
    LabelSegment,
    Prediction,
    SampleBatch,
    decode_deadletter,
    decode_labels,
    decode_prediction,
    decode_samples,
    encode,
)


def _batch(**kw: object) -> SampleBatch:
    base: dict[str, object] = dict(device="dev-1", sensor="accel", t_ms=[0, 10], x=[0.1, 0.2],
                                   y=[0.0, 0.0], z=[9.8, 9.8], unit="m/s2", sent_ms=5)  # fmt: skip
    base.update(kw)
    return SampleBatch(**base)  # type: ignore[arg-type]


def test_round_trip() -> None:
    b = _batch()
    assert decode_samples(encode(b)) == b
    seg = LabelSegment(device="d", start_ms=0, end_ms=10, label="ABD")
    assert decode_labels(encode(seg)) == seg
    p = Prediction(device="d", window_start_ms=0, window_end_ms=4000, label="x", confidence=0.9,
                   probs=[0.1, 0.9], model_version="3", processed_ms=1)  # fmt: skip
    assert decode_prediction(encode(p)) == p
    dl = DeadLetter(source_topic="t", reason="bad", raw=b"\x00\xff")
    assert decode_deadletter(encode(dl)).raw == b"\x00\xff"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "undecodable"),
        (json.dumps({"device": "d"}).encode(), "undecodable"),
        (encode(_batch(v=SCHEMA_VERSION + 1)), "unsupported schema version"),
        (encode(_batch(x=[0.1])), "list lengths differ"),
        (encode(_batch(t_ms=[], x=[], y=[], z=[])), "no samples"),
        (encode(_batch(unit="g")), "not canonical"),
        (encode(_batch(sensor="gyro", unit="rad/s")), "not canonical"),
        (encode(_batch(device="")), "$.device"),
        (
            json.dumps(
                {
                    "v": 1,
                    "device": "d",
                    "sensor": "accel",
                    "t_ms": [0],
                    "x": [float("nan")],
                    "y": [0.0],
                    "z": [0.0],
                    "unit": "m/s2",
                }
            ).encode(),
            "undecodable",
        ),
        (
            b'{"v":1,"device":"d","sensor":"accel","t_ms":[0],"x":[1e999],"y":[0.0],'
            b'"z":[0.0],"unit":"m/s2"}',
            "out of range",
        ),
        (
            json.dumps(
                {
                    "v": 1,
                    "device": "d",
                    "sensor": "baro",
                    "t_ms": [0],
                    "x": [1.0],
                    "y": [0.0],
                    "z": [0.0],
                    "unit": "m/s2",
                }
            ).encode(),
            "undecodable",
        ),
    ],
)
def test_bad_sample_messages_have_one_line_reasons(raw: bytes, reason: str) -> None:
    with pytest.raises(SchemaError) as exc:
        decode_samples(raw)
    assert reason in str(exc.value)
    assert "\n" not in str(exc.value)


def test_label_segment_must_end_after_it_starts() -> None:
    with pytest.raises(SchemaError, match="ends"):
        decode_labels(encode(LabelSegment(device="d", start_ms=10, end_ms=10, label="x")))
