"""The batch cycle and the checkpoint protocol, in process with test doubles: a crash at any
point followed by restore-from-checkpoint + replay from the committed offset yields exactly
the predictions of an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest

from stream_processor.processor import Processor
from tests.unit.stream_processor.fakes import FakeManager, FakeModel, FakeProducer, FakeSink
from wearmon.schemas import SampleBatch, encode
from wearmon.settings import Settings

T0 = 1_742_800_000_000
N_DEVICES = 4


def _messages() -> list[tuple[int, int, bytes, bytes]]:
    """(partition, offset, key, value): 4 devices, 60 s at 50 Hz, 25-sample batches."""
    rng = np.random.default_rng(0)
    out = []
    offsets = [0, 0]
    for start in range(T0, T0 + 60_000, 500):
        for d in range(N_DEVICES):
            dev = f"dev-{d}"
            part = d % 2
            t = list(range(start, start + 500, 20))
            for sensor, unit in (("accel", "m/s2"), ("gyro", "deg/s")):
                v = rng.normal(0, 1, size=(3, 25)).tolist()
                msg = SampleBatch(
                    device=dev, sensor=sensor, t_ms=t, x=v[0], y=v[1], z=v[2], unit=unit, sent_ms=T0
                )
                out.append((part, offsets[part], dev.encode(), encode(msg)))
                offsets[part] += 1
    # one bad message in the middle
    out.insert(100, (0, -1, b"dev-0", b"garbage"))
    fixed, offsets = [], [0, 0]
    for p, _, k, v in out:
        fixed.append((p, offsets[p], k, v))
        offsets[p] += 1
    return fixed


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def _processor(sink: FakeSink, clock: Clock) -> tuple[Processor, FakeProducer]:
    settings = Settings(stream={"batch_max": 16, "batch_wait_ms": 50, "checkpoint_s": 1.0})
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


def _drive(proc: Processor, clock: Clock, msgs, acked: set, stop_at: int | None = None) -> None:
    for i, (p, off, k, v) in enumerate(msgs):
        if stop_at is not None and i >= stop_at:
            return  # crash: nothing after this point happens
        if not proc.is_loaded(p):
            proc.restore(p, *proc.load_checkpoint(p))
        if proc.handle(p, off, k, v, (p, off)):
            acked.add((p, off))
        clock.t += 7
        job = proc.cut()
        if job is not None:
            acked.update(proc.complete(job, proc.execute(job)))
    if stop_at is None:
        clock.t += 10_000
        job = proc.cut(force=True)
        while job is not None:
            acked.update(proc.complete(job, proc.execute(job)))
            job = proc.cut(force=True)


def _committed(acked: set, partition: int) -> int:
    """Kafka commits the end of the contiguous acked run."""
    n = 0
    while (partition, n) in acked:
        n += 1
    return n


def _uninterrupted() -> tuple[list, FakeProducer]:
    sink, clock = FakeSink(), Clock()
    proc, prod = _processor(sink, clock)
    acked: set = set()
    msgs = _messages()
    _drive(proc, clock, msgs, acked)
    assert len(acked) == len(msgs), "every message is acked in the end"
    return sink.rows, prod


def test_uninterrupted_run_predicts_every_window_once_and_dead_letters_garbage() -> None:
    rows, prod = _uninterrupted()
    keys = [(d, s) for d, s, _, _ in rows]
    assert len(keys) == len(set(keys))
    per_dev = {d: sorted(s for dd, s, _, _ in rows if dd == d) for d in {r[0] for r in rows}}
    assert len(per_dev) == N_DEVICES
    for starts in per_dev.values():
        assert np.all(np.diff(starts) == 2000)  # hop 100 x 20 ms, no gaps
        assert len(starts) >= 25
    assert sum(1 for t, _, _ in prod.sent if t == "wearmon.deadletter") == 1


@pytest.mark.parametrize("crash_at", [37, 400, 1111, 1700])
def test_crash_then_restore_and_replay_equals_uninterrupted(crash_at: int) -> None:
    expected, _ = _uninterrupted()
    msgs = _messages()
    sink, clock = FakeSink(), Clock()
    acked: set = set()
    proc, _ = _processor(sink, clock)
    _drive(proc, clock, msgs, acked, stop_at=crash_at)
    # restart: a new worker resumes each partition at its committed offset
    resume = {p: _committed(acked, p) for p in (0, 1)}
    assert any(resume[p] < sum(1 for m in msgs[:crash_at] if m[0] == p) for p in (0, 1)) or (
        crash_at < 50
    )
    replay = [m for m in msgs if m[1] >= resume[m[0]]]
    proc2, _ = _processor(sink, clock)
    acked2: set = set()
    _drive(proc2, clock, replay, acked2)
    assert sorted(sink.rows) == sorted(expected)


def test_acks_wait_for_the_checkpoint() -> None:
    sink, clock = FakeSink(), Clock()
    proc, _ = _processor(sink, clock)
    msgs = _messages()
    proc.restore(0, None, {})
    for p, off, k, v in msgs[:10]:
        if p == 0:
            assert proc.handle(p, off, k, v, (p, off)) is False
    last = max(off for p, off, _, _ in msgs[:10] if p == 0)
    job = proc.cut(force=True)
    assert job is not None and job.checkpoints and job.checkpoints[0].offset == last
    assert proc.complete(job, proc.execute(job)) == [(0, o) for o in range(last + 1)]
    assert sink.ckpt[0][0] == last
