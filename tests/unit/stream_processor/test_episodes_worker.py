"""Episodes in the batch cycle, in process with test doubles: a crash at any point, then a
restore from the checkpoint and a replay from the committed offset, writes exactly the
episodes and minute totals of an uninterrupted run, and those are the episodes of the
predictions stored, even when the restarted worker serves another model."""

from __future__ import annotations

import msgspec
import pytest

from stream_processor.episodes import (
    DAY_MS,
    HOUR_MS,
    buckets,
    decode_message,
    episodes,
    minute_totals,
)
from stream_processor.processor import Processor, decode_device
from tests.unit.stream_processor.fakes import FakeManager, FakeModel, FakeProducer, FakeSink
from tests.unit.stream_processor.test_processor import Clock, _committed, _drive, _messages
from wearmon.settings import Settings

SETTINGS = Settings(stream={"batch_max": 16, "batch_wait_ms": 50, "checkpoint_s": 1.0})
HOP_MS = SETTINGS.signal.hop * 20


def _processor(sink: FakeSink, clock: Clock, model: FakeModel) -> tuple[Processor, FakeProducer]:
    prod = FakeProducer()
    proc = Processor(
        SETTINGS,
        sink=sink,
        producer=prod,
        model_manager=FakeManager(model),
        clock=clock,
        features=False,
    )
    return proc, prod


def _run(crash_at: int | None, second_model: FakeModel | None = None) -> tuple[FakeSink, list]:
    msgs = _messages()
    sink, clock = FakeSink(), Clock()
    proc, prod = _processor(sink, clock, FakeModel())
    acked: set = set()
    _drive(proc, clock, msgs, acked, stop_at=crash_at)
    sent = list(prod.sent)
    if crash_at is not None:
        resume = {p: _committed(acked, p) for p in (0, 1)}
        replay = [m for m in msgs if m[1] >= resume[m[0]]]
        proc2, prod2 = _processor(sink, clock, second_model or FakeModel())
        _drive(proc2, clock, replay, set())
        sent += prod2.sent
    return sink, sent


def _episodes_of_predictions(sink: FakeSink, device: str) -> list:
    return episodes([w for _, w in sorted(sink.stored[device].items())], max_gap_ms=100)


def test_uninterrupted_run_writes_the_episodes_and_minutes_of_its_predictions() -> None:
    sink, sent = _run(None)
    assert len(sink.episodes) == 4
    for device, (through, closed, open_, hours, days) in sink.episodes.items():
        expected = _episodes_of_predictions(sink, device)
        assert len(expected) > 3, "the fake model flips labels: several episodes"
        assert [*closed, open_] == expected
        assert through == max(sink.stored[device])
        wins = [w for _, w in sorted(sink.stored[device].items())]
        by_hour = buckets(minute_totals(wins, hop_ms=HOP_MS, bucket_ms=HOUR_MS))
        assert hours == {t: b.member() for t, b in by_hour.items()}
        by_day = buckets(minute_totals(wins, hop_ms=HOP_MS, bucket_ms=DAY_MS))
        assert days == {t: b.member() for t, b in by_day.items()}
        on_kafka = [
            decode_message(v)
            for t, k, v in sent
            if t == "wearmon.episodes" and k == device.encode()
        ]
        assert [(m.start_ms, m.activity, m.windows) for m in on_kafka] == [
            (e.start_ms, e.activity, e.windows) for e in closed
        ]


@pytest.mark.parametrize("crash_at", [37, 400, 1111, 1700])
def test_crash_then_restore_and_replay_writes_the_same_episodes(crash_at: int) -> None:
    expected, _ = _run(None)
    sink, sent = _run(crash_at)
    assert sink.episodes == expected.episodes
    # Kafka: at least once, each closed episode at least once, none that was not closed
    closed = {(d, e.start_ms) for d, v in expected.episodes.items() for e in v[1]}
    on_kafka = [decode_message(v) for t, _, v in sent if t == "wearmon.episodes"]
    assert {(m.device, m.start_ms) for m in on_kafka} == closed


@pytest.mark.parametrize("crash_at", [200, 400, 600])
def test_a_replay_by_another_model_counts_the_stored_predictions(crash_at: int) -> None:
    """The restarted worker's model predicts the other class for every window: the windows
    it re-classifies are already stored, so the episodes follow the stored predictions."""
    flipped = FakeModel(version="2", classes=("b", "a"))
    sink, _ = _run(crash_at, second_model=flipped)
    for device, (_, closed, open_, _, _) in sink.episodes.items():
        assert [*closed, open_] == _episodes_of_predictions(sink, device)
    assert {r[3] for r in sink.rows} == {"1", "2"}, "both models' predictions are stored"


def test_the_checkpoint_holds_the_tracker_and_the_last_seen_time() -> None:
    sink, _ = _run(None)
    states = {d: decode_device(raw) for _, ck in sink.ckpt.values() for d, raw in ck.items()}
    assert set(states) == set(sink.episodes)
    for d, s in states.items():
        assert s.tracker.last_start == sink.episodes[d][0]
        assert s.seen_ms is not None
    # the field is msgpack of {w: windower, e: tracker, s: seen}
    raw = next(iter(next(iter(sink.ckpt.values()))[1].values()))
    assert set(msgspec.msgpack.decode(raw)) == {"w", "e", "s"}


def _silent(proc: Processor) -> dict[str, float]:
    return {
        s.labels["minutes"]: s.value
        for metric in proc.metrics.silent_devices.collect()
        for s in metric.samples
    }


def test_silent_devices_are_counted_and_a_restart_keeps_their_silence() -> None:
    msgs = _messages()
    sink, clock = FakeSink(), Clock()
    proc, _ = _processor(sink, clock, FakeModel())
    _drive(proc, clock, msgs, set())  # 4 devices, then a final checkpoint
    assert _silent(proc) == {"5": 0, "10": 0, "30": 0, "60": 0}
    clock.t += 11 * 60_000
    proc.cut()
    assert _silent(proc) == {"5": 4, "10": 4, "30": 0, "60": 0}
    # a new worker restores the partitions: the devices stay silent since their last message
    proc2, _ = _processor(sink, clock, FakeModel())
    for p in (0, 1):
        proc2.restore(p, *proc2.load_checkpoint(p))
    clock.t += 20 * 60_000
    proc2.cut()
    assert _silent(proc2) == {"5": 4, "10": 4, "30": 4, "60": 0}
