"""Fault handling of the batch cycle with test doubles: backoff, failure classification,
isolation of a failing device, idle-device eviction and retirement, back-pressure."""

from __future__ import annotations

from typing import Any

import pytest

from stream_processor.processor import (
    KafkaFlushTimeout,
    Processor,
    bisect_failures,
    is_transient,
    retry_delay,
)
from tests.unit.stream_processor.fakes import FakeManager, FakeModel, FakeProducer, FakeSink
from wearmon.schemas import SampleBatch, decode_deadletter, encode
from wearmon.settings import Settings

T0 = 1_742_800_000_000


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def _proc(sink: Any, clock: Clock, **stream: Any) -> tuple[Processor, FakeProducer]:
    settings = Settings(stream={"batch_max": 16, "batch_wait_ms": 0, "checkpoint_s": 1.0, **stream})
    prod = FakeProducer()
    proc = Processor(
        settings,
        sink=sink,
        producer=prod,
        model_manager=FakeManager(FakeModel()),
        clock=clock,
        features=False,
    )
    return proc, prod


def _msg(device: str, start: int, sensor: str = "accel") -> bytes:
    t = list(range(start, start + 500, 20))
    unit = "m/s2" if sensor == "accel" else "deg/s"
    return encode(
        SampleBatch(device=device, sensor=sensor, t_ms=t, x=[0.1] * 25, y=[0.2] * 25,
                    z=[9.8] * 25, unit=unit)
    )  # fmt: skip


def _feed(proc: Processor, devices: list[str], seconds: int, offset: int = 0) -> int:
    for start in range(T0, T0 + seconds * 1000, 500):
        for d in devices:
            for sensor in ("accel", "gyro"):
                proc.handle(0, offset, d.encode(), _msg(d, start, sensor), offset)
                offset += 1
    return offset


def test_retry_delay_doubles_up_to_the_bound() -> None:
    assert [retry_delay(a, 0.5, 4.0) for a in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert retry_delay(10_000, 0.5, 30.0) == 30.0


def test_failures_are_classified() -> None:
    import redis

    assert is_transient(redis.exceptions.ConnectionError("down"))
    assert is_transient(redis.exceptions.TimeoutError("slow"))
    assert is_transient(KafkaFlushTimeout("3 not delivered"))
    assert is_transient(redis.exceptions.ResponseError("OOM command not allowed"))
    assert not is_transient(redis.exceptions.ResponseError("WRONGTYPE Operation"))
    # a Redis Cluster failing over, resharding: retried; keys of two slots in one script: not
    assert is_transient(redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"))
    assert is_transient(redis.exceptions.TryAgainError("TRYAGAIN Multiple keys request"))
    assert not is_transient(redis.exceptions.ResponseError("CROSSSLOT Keys in request"))
    # no node of a cluster answers, a slot whose primary is gone: redis-py raises these
    # outside RedisError; retried, never dead-lettered
    assert is_transient(redis.exceptions.RedisClusterException("cannot be connected"))
    assert is_transient(redis.exceptions.SlotNotCoveredError("slot 7 is not covered"))
    assert not is_transient(ValueError("bad input"))


def test_bisect_finds_the_failing_devices_and_propagates_transient_errors() -> None:
    calls: list[list[str]] = []

    def attempt(devices: Any) -> None:
        calls.append(list(devices))
        if "bad" in devices or "worse" in devices:
            raise ValueError("poison")

    devices = [f"d{i}" for i in range(14)] + ["bad", "worse"]
    bad = bisect_failures(devices, attempt)
    assert sorted(d for d, _ in bad) == ["bad", "worse"]
    assert all("ValueError: poison" in why for _, why in bad)
    assert len(calls) < len(devices)

    def down(devices: Any) -> None:
        raise OSError("connection refused")

    with pytest.raises(OSError):
        bisect_failures(devices, down)


class PoisonSink(FakeSink):
    """A sink for which every write with a prediction of ``poison`` fails (deterministic)."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    def write(self, preds: Any, features: Any = None, checkpoints: Any = (), **kw: Any) -> Any:
        if any(p.device == self.poison for p in preds):
            raise ValueError("WRONGTYPE history key")
        return super().write(preds, features, checkpoints)


def test_isolation_dead_letters_only_the_failing_device() -> None:
    sink, clock = PoisonSink("dev-bad"), Clock()
    proc, prod = _proc(sink, clock)
    proc.restore(0, None, {})
    devices = ["dev-a", "dev-bad", "dev-b"]
    last = _feed(proc, devices, 20) - 1
    clock.t += 5_000
    job = proc.cut(force=True)
    assert job is not None and job.checkpoints
    with pytest.raises(ValueError):
        proc.execute(job)
    result = proc.execute_isolated(job, "ValueError: WRONGTYPE history key")
    proc.complete(job, result)
    written = {d for d, *_ in sink.rows}
    assert written == {"dev-a", "dev-b"}
    assert {p.device for p in result.predictions} == {"dev-a", "dev-b"}
    assert sink.ckpt[0][0] == last, "the checkpoint must still be written"
    letters = [decode_deadletter(v) for t, _, v in prod.sent if t == "wearmon.deadletter"]
    assert [d.key for d in letters] == ["dev-bad"]
    assert "WRONGTYPE" in letters[0].reason
    assert proc.metrics.isolated_windows._value.get() > 0


def test_a_retry_after_kafka_delivery_writes_redis_only() -> None:
    class FlakySink(FakeSink):
        fail = True

        def write(self, preds: Any, features: Any = None, checkpoints: Any = (), **kw: Any) -> Any:
            if self.fail:
                self.fail = False
                raise OSError("redis down")
            return super().write(preds, features, checkpoints)

    sink, clock = FlakySink(), Clock()
    proc, prod = _proc(sink, clock)
    proc.restore(0, None, {})
    _feed(proc, ["dev-a"], 10)
    clock.t += 5_000
    job = proc.cut(force=True)
    assert job is not None
    with pytest.raises(OSError):
        proc.execute(job)
    sent = len([1 for t, *_ in prod.sent if t == "wearmon.predictions"])
    proc.execute(job)
    assert len([1 for t, *_ in prod.sent if t == "wearmon.predictions"]) == sent > 0
    assert len(sink.rows) == sent


def test_idle_devices_are_evicted_then_restored_from_the_checkpoint() -> None:
    sink, clock = FakeSink(), Clock()
    proc, _ = _proc(sink, clock, idle_evict_s=60, state_retention_s=600)
    proc.restore(0, None, {})
    off = _feed(proc, ["dev-a", "dev-b"], 10)
    job = proc.cut(force=True)
    assert job is not None
    proc.complete(job, proc.execute(job))
    before = proc.partitions[0].devices["dev-a"].to_state()
    clock.t += 61_000
    job = proc.cut()
    if job is not None:
        proc.complete(job, proc.execute(job))
    assert proc.partitions[0].devices == {}
    assert set(proc.partitions[0].evicted) == {"dev-a", "dev-b"}
    assert proc.metrics.devices_evicted._value.get() == 2
    # dev-a sends again: its state comes back from the checkpoint
    proc.handle(0, off, b"dev-a", _msg("dev-a", T0 + 10_000), off)
    w = proc.partitions[0].devices["dev-a"]
    assert w.next_start == before["next_start"] or w.max_seen > before["max_seen"]
    assert "dev-a" not in proc.partitions[0].evicted
    # dev-b stays away past the retention: its state is deleted from the checkpoint
    clock.t += 600_000
    proc.handle(0, off + 1, b"dev-a", _msg("dev-a", T0 + 10_500), off + 1)
    job = proc.cut(force=True)
    assert job is not None and job.checkpoints[0].retired == ("dev-b",)
    proc.complete(job, proc.execute(job))
    assert "dev-b" not in sink.ckpt[0][1]
    assert proc.metrics.devices_retired._value.get() == 1


def test_backlogged_when_too_many_windows_wait() -> None:
    sink, clock = FakeSink(), Clock()
    proc, _ = _proc(sink, clock, max_pending_windows=3)
    proc.models.current = None  # no model: windows pile up
    proc.restore(0, None, {})
    assert not proc.backlogged
    _feed(proc, ["dev-a"], 20)
    assert proc.cut() is None
    assert proc.backlogged


def test_checkpoint_read_from_the_legacy_key_is_rewritten_whole() -> None:
    from stream_processor.processor import encode_state

    sink, clock = FakeSink(), Clock()
    proc, _ = _proc(sink, clock)
    other, _ = _proc(FakeSink(), Clock())
    other.restore(0, None, {})
    _feed(other, ["dev-a", "dev-b"], 6)
    states = {d: encode_state(w) for d, w in other.partitions[0].devices.items()}
    proc.restore(0, 23, states, legacy=True)  # read from ckpt:{app}:{topic}:{p}
    proc.handle(0, 24, b"dev-a", _msg("dev-a", T0 + 6_000), 24)
    job = proc.cut(force=True)
    assert job is not None
    assert set(job.checkpoints[0].states) == {"dev-a", "dev-b"}, "every device rewritten"


def test_rewind_drops_one_partition_and_keeps_the_other() -> None:
    sink, clock = FakeSink(), Clock()
    proc, _ = _proc(sink, clock)
    proc.restore(0, None, {})
    proc.restore(1, None, {})
    off = 0
    for start in range(T0, T0 + 10_000, 500):
        for p, d in ((0, "dev-a"), (1, "dev-b")):
            for sensor in ("accel", "gyro"):
                proc.handle(p, off, d.encode(), _msg(d, start, sensor), (p, off))
                off += 1
    job = proc.cut(force=True)
    assert job is not None and {w.device for w in job.windows} == {"dev-a", "dev-b"}
    assert set(job.ack_partitions) == {0, 1} and len(job.guards) == 2
    nxt = proc.rewind(job, [1])
    assert nxt == {1: off}
    assert {w.device for w in job.windows} == {"dev-a"}
    assert [c.partition for c in job.checkpoints] == [0]
    assert all(t[0] == 0 for t in job.acks) and set(job.ack_partitions) == {0}
    assert [g[0] for g in job.guards] == [proc.checkpoint_key(0)]
    assert not proc.is_loaded(1) and proc.is_loaded(0)
    proc.complete(job, proc.execute(job))
    assert proc.partitions[0].written_offset == job.checkpoints[0].offset
