"""Episodes and minute totals: the incremental tracker equals the batch functions for any
chunking of a device's predictions, its checkpointed state round-trips exactly, and writing
what each step touched (absolute values, later replacing earlier) gives the batch totals."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processor.episodes import (
    DAY_MS,
    HOUR_MS,
    NO_DATA,
    Bucket,
    EpisodeTracker,
    TrackerState,
    Window,
    buckets,
    decode_message,
    episodes,
    message,
    minute_totals,
    write_of,
)
from wearmon.schemas import encode

HOP = 2_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS


def _windows(draw_steps: list[tuple[int, str, float]], start: int = T0 - 20 * HOP) -> list[Window]:
    """Windows of 4 s every hop, with optional gaps (extra hops skipped)."""
    out, t = [], start
    for skip, label, conf in draw_steps:
        t += HOP * (1 + skip)
        out.append(Window(t, t + 2 * HOP, label, conf))
    return out


steps = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 0, 0, 1, 5, 900]),  # 900 hops: 30 min, across hours
        st.sampled_from(["sit", "walk", "tap"]),
        st.floats(0.0, 1.0, allow_nan=False),
    ),
    max_size=80,
)


def _wire_round_trip(state: TrackerState) -> TrackerState:
    return TrackerState.from_wire(msgspec.msgpack.decode(msgspec.msgpack.encode(state.to_wire())))


@settings(max_examples=200, deadline=None)
@given(steps, st.lists(st.integers(1, 10), max_size=20))
def test_incremental_equals_batch_for_any_chunking(s, cuts) -> None:
    wins = _windows(s)
    tracker = EpisodeTracker(max_gap_ms=100, hop_ms=HOP)
    got, i = [], 0
    hours: dict[int, Bucket] = {}
    days: dict[int, Bucket] = {}
    for c in [*cuts, len(wins)]:
        step = tracker.step(wins[i : i + c])
        tracker.commit(step)
        # each chunk's state goes through a checkpoint and back (a restart after every chunk)
        tracker = tracker.with_state(_wire_round_trip(tracker.state))
        got += step.closed
        hours.update({b.start_ms: b for b in step.hours})  # absolute: the later replaces
        days.update({b.start_ms: b for b in step.days})
        i += c
    if tracker.open is not None:
        got.append(tracker.open)
    assert got == episodes(wins, max_gap_ms=100)
    assert hours == buckets(minute_totals(wins, hop_ms=HOP, bucket_ms=HOUR_MS))
    assert days == buckets(minute_totals(wins, hop_ms=HOP, bucket_ms=DAY_MS))


@settings(max_examples=100, deadline=None)
@given(steps, st.integers(0, 80))
def test_a_replay_from_a_checkpoint_rebuilds_the_same_writes(s, at) -> None:
    """A crash after any window: the state checkpointed then, fed the same windows again,
    gives the same episodes and buckets as the run that did not crash (idempotence)."""
    wins = _windows(s)
    at = min(at, len(wins))
    first = EpisodeTracker(hop_ms=HOP)
    first.update(wins[:at])
    checkpoint = _wire_round_trip(first.state)
    rest = first.step(wins[at:])
    replayed = EpisodeTracker(hop_ms=HOP, state=checkpoint).step(wins[at:])
    assert replayed == rest
    assert write_of("d", replayed) == write_of("d", rest)


def test_runs_merge_and_gaps_and_activity_changes_split() -> None:
    t0 = 1_000_000
    w = [
        Window(t0, t0 + 4000, "sit", 0.8),
        Window(t0 + 2000, t0 + 6000, "sit", 0.6),
        Window(t0 + 4000, t0 + 8000, "walk", 0.9),  # another activity: a new episode
        Window(t0 + 20000, t0 + 24000, "walk", 0.5),  # after a gap: a new episode
    ]
    eps = episodes(w)
    assert [(e.start_ms, e.end_ms, e.activity, e.windows) for e in eps] == [
        (t0, t0 + 6000, "sit", 2),
        (t0 + 4000, t0 + 8000, "walk", 1),
        (t0 + 20000, t0 + 24000, "walk", 1),
    ]
    assert abs(eps[0].mean_confidence - 0.7) < 1e-9
    assert minute_totals(w, hop_ms=2000, bucket_ms=HOUR_MS) == {
        (0, "sit"): 2 * 2000,
        (0, "walk"): 2 * 2000,
        (0, NO_DATA): 20000 - 4000 - 2000,
    }
    tracker = EpisodeTracker(max_gap_ms=100, hop_ms=2000)
    assert tracker.update(w[:2]) == []  # still growing
    assert tracker.update(w[2:]) == eps[:2]
    assert tracker.open == eps[2]


def test_a_window_just_within_the_gap_continues_the_episode() -> None:
    a = Window(0, 4000, "sit", 1.0)
    assert len(episodes([a, Window(4100, 8100, "sit", 1.0)], max_gap_ms=100)) == 1
    assert len(episodes([a, Window(4101, 8101, "sit", 1.0)], max_gap_ms=100)) == 2


def test_minutes_fall_into_the_hour_and_day_of_the_window_start() -> None:
    t = T0 + HOUR_MS - HOP  # the last window of an hour, then the first of the next
    tracker = EpisodeTracker(hop_ms=HOP)
    step = tracker.step(
        [Window(t, t + 2 * HOP, "sit", 1.0), Window(t + HOP, t + 3 * HOP, "sit", 1)]
    )
    assert [(b.start_ms, b.ms) for b in step.hours] == [
        (T0, {"sit": HOP}),
        (T0 + HOUR_MS, {"sit": HOP}),
    ]
    member = json.loads(step.hours[1].member())
    assert member == {"t": T0 + HOUR_MS, "sit": round(HOP / 60_000, 3)}


def test_the_episode_message_round_trips() -> None:
    e = episodes([Window(0, 4000, "sit", 0.123456789)])[0]
    m = decode_message(encode(message("dev-1", e)))
    assert (m.device, m.start_ms, m.end_ms, m.activity, m.windows) == ("dev-1", 0, 4000, "sit", 1)
    assert m.mean_confidence == 0.1235


def test_an_empty_step_writes_nothing() -> None:
    tracker = EpisodeTracker(hop_ms=HOP)
    assert write_of("d", tracker.step([])) is None
    tracker.update(_windows([(0, "sit", 0.5)]))
    assert write_of("d", tracker.step([])) is None
