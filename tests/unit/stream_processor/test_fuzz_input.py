"""Property-based fuzz of sample and label messages through the real decode + dead-letter
path: any key and value is either processed or dead-lettered with a known kind, never
raises, and every dead letter fits a Kafka message."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_processor.deadletter import KINDS
from stream_processor.processor import Processor
from tests.unit.stream_processor.fakes import FakeManager, FakeModel, FakeProducer, FakeSink
from wearmon.errors import SchemaError
from wearmon.schemas import (
    MAX_FUTURE_SKEW_MS,
    check_device_id,
    decode_deadletter,
    decode_labels,
)
from wearmon.settings import Settings

NOW = 1_742_800_000_000
SETTINGS = Settings(stream={"batch_max": 16, "batch_wait_ms": 0})

texts = st.text(min_size=0, max_size=200)
ints = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.integers(min_value=NOW - 10**6, max_value=NOW + 2 * MAX_FUTURE_SKEW_MS),
)
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(-20, 20))
devices = st.one_of(texts, st.from_regex(r"\A[A-Za-z0-9._:-]{1,140}\Z"), st.just("__offset__"))


@st.composite
def sample_messages(draw: Any) -> tuple[bytes | None, bytes]:
    n = draw(st.integers(0, 30))
    device = draw(devices)
    t0 = draw(ints)
    msg: dict[str, Any] = {
        "v": draw(st.sampled_from([1, 1, 1, 2])),
        "device": device,
        "sensor": draw(st.sampled_from(["accel", "gyro", "mag"])),
        "t_ms": [t0 + 20 * i for i in range(n)] if draw(st.booleans()) else draw(st.lists(ints)),
        "x": draw(st.lists(floats, min_size=n, max_size=n)),
        "y": draw(st.lists(floats, min_size=n, max_size=n)),
        "z": draw(st.lists(floats, min_size=n, max_size=n + draw(st.integers(0, 1)))),
        "unit": draw(st.sampled_from(["m/s2", "deg/s", "g", ""])),
    }
    for field in draw(st.lists(st.sampled_from(sorted(msg)), max_size=2)):
        msg[field] = draw(st.one_of(texts, ints, st.none()))  # a wrong type
    raw = json.dumps(msg, allow_nan=False).encode()
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=300)) if draw(st.booleans()) else raw[: len(raw) // 2]
    key = draw(st.one_of(st.none(), st.just(device.encode()), st.binary(max_size=200)))
    return key, raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sample_messages(), min_size=1, max_size=8))
def test_any_sample_message_is_processed_or_dead_lettered(msgs: list) -> None:
    prod = FakeProducer()
    proc = Processor(
        SETTINGS,
        sink=FakeSink(),
        producer=prod,
        model_manager=FakeManager(FakeModel()),
        clock=lambda: NOW,
        features=False,
    )
    proc.restore(0, None, {})
    for offset, (key, raw) in enumerate(msgs):
        proc.handle(0, offset, key, raw, offset)
    letters = [decode_deadletter(v) for t, _, v in prod.sent if t == "wearmon.deadletter"]
    counted = {
        s.labels["reason"]: s.value
        for m in proc.metrics.deadletters.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert set(counted) <= set(KINDS)
    assert sum(counted.values()) == len(letters)
    assert all(len(v) < 1_000_000 for t, _, v in prod.sent if t == "wearmon.deadletter")
    assert len(proc.partitions[0].unacked) == len(msgs), "a message left the ack path"
    for device in proc.partitions[0].devices:  # only valid ids get state
        assert check_device_id(device) == device
    job = proc.cut(force=True)  # whatever got in can be classified and checkpointed
    if job is not None:
        proc.complete(job, proc.execute(job))


@settings(max_examples=300, deadline=None)
@given(
    device=devices,
    start=ints,
    end=ints,
    label=texts,
    v=st.sampled_from([1, 1, 2]),
)
def test_any_label_segment_is_accepted_only_within_the_rules(
    device: str, start: int, end: int, label: str, v: int
) -> None:
    raw = json.dumps(
        {"v": v, "device": device, "start_ms": start, "end_ms": end, "label": label}
    ).encode()
    try:
        seg = decode_labels(raw, now_ms=NOW)
    except SchemaError as exc:
        assert "\n" not in str(exc)
        return
    assert 0 < seg.end_ms - seg.start_ms <= 24 * 3600 * 1000
    assert seg.end_ms <= NOW + MAX_FUTURE_SKEW_MS
    assert 1 <= len(seg.device) <= 128
