"""Episodes and minute totals: the incremental tracker equals the batch functions for any
chunking of a device's predictions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processor.episodes import (
    DAY_MS,
    HOUR_MS,
    NO_DATA,
    EpisodeTracker,
    Window,
    episodes,
    minute_totals,
)

HOP = 2_000


def _windows(draw_steps: list[tuple[int, str, float]]) -> list[Window]:
    """Windows of 4 s every hop, with optional gaps (extra hops skipped)."""
    out, t = [], 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS - 20 * HOP
    for skip, label, conf in draw_steps:
        t += HOP * (1 + skip)
        out.append(Window(t, t + 2 * HOP, label, conf))
    return out


steps = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 0, 0, 1, 5]),
        st.sampled_from(["sit", "walk", "tap"]),
        st.floats(0.0, 1.0, allow_nan=False),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(steps, st.lists(st.integers(1, 10), max_size=20))
def test_incremental_equals_batch_for_any_chunking(s, cuts) -> None:
    wins = _windows(s)
    tracker = EpisodeTracker(max_gap_ms=100, hop_ms=HOP)
    got, i = [], 0
    for c in [*cuts, len(wins)]:
        got += tracker.update(wins[i : i + c])
        i += c
    if tracker.open is not None:
        got.append(tracker.open)
    assert [e.__dict__ for e in got] == [e.__dict__ for e in episodes(wins, max_gap_ms=100)]
    assert tracker.hourly == minute_totals(wins, hop_ms=HOP, bucket_ms=HOUR_MS)
    assert tracker.daily == minute_totals(wins, hop_ms=HOP, bucket_ms=DAY_MS)


def test_runs_merge_and_gaps_split() -> None:
    t0 = 1_000_000
    w = [
        Window(t0, t0 + 4000, "sit", 0.8),
        Window(t0 + 2000, t0 + 6000, "sit", 0.6),
        Window(t0 + 4000, t0 + 8000, "walk", 0.9),
        Window(t0 + 20000, t0 + 24000, "walk", 0.5),  # after a gap: a new episode
    ]
    eps = episodes(w)
    assert [(e.start_ms, e.end_ms, e.activity, e.windows) for e in eps] == [
        (t0, t0 + 6000, "sit", 2),
        (t0 + 4000, t0 + 8000, "walk", 1),
        (t0 + 20000, t0 + 24000, "walk", 1),
    ]
    assert abs(eps[0].mean_confidence - 0.7) < 1e-9
    totals = minute_totals(w, hop_ms=2000, bucket_ms=HOUR_MS)
    assert totals == {
        (0, "sit"): 2 * 2000 / 60000,
        (0, "walk"): 2 * 2000 / 60000,
        (0, NO_DATA): (20000 - 4000 - 2000) / 60000,
    }
