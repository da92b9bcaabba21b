"""Activity episodes and minutes per activity per hour/day, from a device's predictions.

An **episode** is a run of consecutive windows of one predicted activity: ``{start, end,
activity, mean confidence}``. A window continues the open episode when it has the same label
and starts no later than ``max_gap_ms`` after the episode's end (windows overlap, so in a
gap-free stream the next window starts before the previous one ends); any other window closes
it and opens a new one. **Minutes** count each window's hop (the time it adds to the stream,
``hop_ms``) to its activity, in the hour (and day) its start falls in, so the minutes of an
hour are additive over any split of the predictions. Time between two windows beyond one
hop (the watch sent nothing, or windows were skipped) counts as ``NO_DATA`` minutes in the
hour the data came back.

Pure core: :func:`episodes` and :func:`minute_totals` on a batch; :class:`EpisodeTracker` the
incremental form (one per device), proven equal to the batch functions for any chunking by a
property test. :func:`write_episodes` is the Redis adapter (one pipeline).

Redis layout (``device`` is the pseudonymous device id; TTL: redis.history_ttl_s):

- ``ep:hist:{device}``   stream of closed episodes, entry id ``{start_ms}-0``; fields
                         start_ms, end_ms, activity, mean_confidence, windows
- ``ep:open:{device}``   hash, the episode still growing (same fields)
- ``act:hour:{device}``  sorted set, score = hour start (epoch ms), member = JSON
                         ``{"t": hour_start_ms, "<activity>": minutes, ...}``
- ``act:day:{device}``   the same per UTC day
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

HOUR_MS = 3_600_000
#: the "activity" of the minutes between windows that are more than one hop apart
NO_DATA = "no data"
DAY_MS = 24 * HOUR_MS


def episodes_key(device: str) -> str:
    return f"ep:hist:{device}"


def open_episode_key(device: str) -> str:
    return f"ep:open:{device}"


def hourly_key(device: str) -> str:
    return f"act:hour:{device}"


def daily_key(device: str) -> str:
    return f"act:day:{device}"


@dataclass(frozen=True)
class Window:
    """One prediction as the episodes need it."""

    start_ms: int
    end_ms: int
    activity: str
    confidence: float


@dataclass(frozen=True)
class Episode:
    start_ms: int
    end_ms: int
    activity: str
    mean_confidence: float
    windows: int

    def fields(self) -> dict[str, str]:
        return {
            "start_ms": str(self.start_ms),
            "end_ms": str(self.end_ms),
            "activity": self.activity,
            "mean_confidence": f"{self.mean_confidence:.4f}",
            "windows": str(self.windows),
        }


#: {(bucket start ms, activity): minutes}
Totals = dict[tuple[int, str], float]


@dataclass
class EpisodeTracker:
    """The incremental form: feed a device's predictions in order, in any chunks."""

    max_gap_ms: int = 100
    hop_ms: int = 2_000
    _open: tuple[int, int, str, float, int] | None = None  # start, end, activity, sum, n
    _last_start: int | None = None
    hourly: Totals = field(default_factory=dict)
    daily: Totals = field(default_factory=dict)

    def update(self, windows: Iterable[Window]) -> list[Episode]:
        """Add windows (in start order); returns the episodes they closed."""
        closed: list[Episode] = []
        for w in windows:
            for totals, size in ((self.hourly, HOUR_MS), (self.daily, DAY_MS)):
                _count(totals, size, w, self._last_start, self.hop_ms)
            self._last_start = w.start_ms
            o = self._open
            if o is not None and o[2] == w.activity and w.start_ms <= o[1] + self.max_gap_ms:
                self._open = (o[0], max(o[1], w.end_ms), o[2], o[3] + w.confidence, o[4] + 1)
                continue
            if o is not None:
                closed.append(_episode(o))
            self._open = (w.start_ms, w.end_ms, w.activity, w.confidence, 1)
        return closed

    @property
    def open(self) -> Episode | None:
        return None if self._open is None else _episode(self._open)


def _episode(o: tuple[int, int, str, float, int]) -> Episode:
    return Episode(o[0], o[1], o[2], o[3] / o[4], o[4])


def episodes(windows: Sequence[Window], *, max_gap_ms: int = 100) -> list[Episode]:
    """All episodes of a device's predictions (in start order), the last one included."""
    out: list[Episode] = []
    i = 0
    while i < len(windows):
        j, end = i + 1, windows[i].end_ms
        while (
            j < len(windows)
            and windows[j].activity == windows[i].activity
            and windows[j].start_ms <= end + max_gap_ms
        ):
            end = max(end, windows[j].end_ms)
            j += 1
        run = windows[i:j]
        conf = sum(w.confidence for w in run) / len(run)
        out.append(Episode(run[0].start_ms, end, run[0].activity, conf, len(run)))
        i = j
    return out


def _count(totals: Totals, size: int, w: Window, last_start: int | None, hop_ms: int) -> None:
    bucket = w.start_ms - w.start_ms % size
    totals[(bucket, w.activity)] = totals.get((bucket, w.activity), 0.0) + hop_ms / 60_000
    if last_start is not None and w.start_ms - last_start > hop_ms:
        missing = (w.start_ms - last_start - hop_ms) / 60_000
        totals[(bucket, NO_DATA)] = totals.get((bucket, NO_DATA), 0.0) + missing


def minute_totals(windows: Iterable[Window], *, hop_ms: int = 2_000, bucket_ms: int) -> Totals:
    """Minutes per (bucket start, activity): each window counts its hop; the time between
    windows more than a hop apart counts as NO_DATA."""
    out: Totals = {}
    last: int | None = None
    for w in windows:
        _count(out, bucket_ms, w, last, hop_ms)
        last = w.start_ms
    return out


def bucket_rows(totals: Totals) -> dict[int, dict[str, Any]]:
    """{bucket start: {"t": start, activity: minutes, ...}} (the members of act:* keys)."""
    rows: dict[int, dict[str, Any]] = {}
    for (t, activity), minutes in sorted(totals.items()):
        rows.setdefault(t, {"t": t})[activity] = round(minutes, 3)
    return rows


def windows_of_history(entries: Iterable[tuple[Any, dict[Any, Any]]]) -> list[Window]:
    """Windows from ``XRANGE pred:hist:{device}`` entries (bytes or str fields)."""

    def s(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    out = []
    for _, raw in entries:
        f = {s(k): s(v) for k, v in raw.items()}
        out.append(
            Window(
                int(f["window_start_ms"]),
                int(f["window_end_ms"]),
                f["label"],
                float(f["confidence"]),
            )
        )
    return out


def _entry_ms(entry_id: Any) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(text.split("-")[0])


def write_episodes(
    client: Any,
    device: str,
    closed: Sequence[Episode],
    open_episode: Episode | None,
    hourly: Totals,
    daily: Totals,
    *,
    ttl_s: int,
) -> None:
    """Write closed episodes, the open one and the touched minute buckets in one pipeline.

    Re-writing the same episodes is harmless: an episode that does not start after the
    stream's newest entry is skipped (idempotent by episode start, like the predictions)."""
    pipe = client.pipeline(transaction=False)
    ek = episodes_key(device)
    top = client.xrevrange(ek, count=1)
    last = _entry_ms(top[0][0]) if top else -1
    for e in closed:
        if e.start_ms > last:
            pipe.xadd(ek, e.fields(), id=f"{e.start_ms}-0")
    pipe.expire(ek, ttl_s)
    ok = open_episode_key(device)
    pipe.delete(ok)
    if open_episode is not None:
        pipe.hset(ok, mapping=open_episode.fields())
        pipe.expire(ok, ttl_s)
    for key, totals in ((hourly_key(device), hourly), (daily_key(device), daily)):
        for t, member in bucket_rows(totals).items():
            pipe.zremrangebyscore(key, t, t)
            pipe.zadd(key, {json.dumps(member, sort_keys=True): t})
        pipe.expire(key, ttl_s)
    pipe.execute()
