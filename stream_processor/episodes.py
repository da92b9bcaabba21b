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

Pure core: :func:`episodes` and :func:`minute_totals` on a batch; :func:`advance` the
incremental form (a :class:`TrackerState` and the next windows in, the new state, the
episodes closed and the buckets touched out), proven equal to the batch functions for any
chunking by a property test. The state is small (the open episode, the last window start,
the current hour and day) and exact (integer milliseconds, confidence in millionths), so
the stream worker checkpoints it with the device's windower state: after a crash the
re-emitted windows rebuild the same episodes and the same totals. The worker writes them
in its batch script (stream_processor.sinks), absolute values only (a replay rewrites the
same numbers).

Redis layout (``device`` is the pseudonymous device id, in braces: a hash tag, so that a
device's keys share one slot of a Redis Cluster; TTL: redis.history_ttl_s):

- ``ep:hist:{device}``   stream of closed episodes, entry id ``{start_ms}-0``; fields
                         start_ms, end_ms, activity, mean_confidence, windows
- ``ep:open:{device}``   hash, the episode still growing (same fields), plus ``through_ms``:
                         the start of the last window counted (the writes only go forward)
- ``act:hour:{device}``  sorted set, score = hour start (epoch ms), member = JSON
                         ``{"t": hour_start_ms, "<activity>": minutes, ...}``; buckets older
                         than the TTL are trimmed
- ``act:day:{device}``   the same per UTC day
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from wearmon.schemas import SCHEMA_VERSION

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: the "activity" of the minutes between windows that are more than one hop apart
NO_DATA = "no data"
#: confidences are summed in millionths (as stored: 6 decimals), so sums are exact
MICRO = 1_000_000


def device_key(prefix: str, device: str) -> str:
    """The key ``prefix`` of ``device``: ``prefix:{device}``, the device id a hash tag, so
    that every key of a device is in one slot of a Redis Cluster (a script may write them
    together); on a single server the braces are only characters."""
    return f"{prefix}:{{{device}}}"


def key_device(key: str | bytes) -> str:
    """The device of a per-device key (:func:`device_key`)."""
    text = key.decode() if isinstance(key, bytes) else key
    return text[text.index("{") + 1 : -1]


def episodes_key(device: str) -> str:
    return device_key("ep:hist", device)


def open_episode_key(device: str) -> str:
    return device_key("ep:open", device)


def hourly_key(device: str) -> str:
    return device_key("act:hour", device)


def daily_key(device: str) -> str:
    return device_key("act:day", device)


@dataclass(frozen=True)
class Window:
    """One prediction as the episodes need it."""

    start_ms: int
    end_ms: int
    activity: str
    confidence: float


def micro(confidence: float) -> int:
    """The confidence in millionths, rounded as the sink stores it (6 decimals)."""
    return round(float(f"{confidence:.6f}") * MICRO)


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


class EpisodeMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One closed episode (topic ``wearmon.episodes``, key = device id; at least once:
    dedupe by ``(device, start_ms)``)."""

    v: int = SCHEMA_VERSION
    device: str
    start_ms: int
    end_ms: int
    activity: str
    mean_confidence: float
    windows: int


def message(device: str, e: Episode) -> EpisodeMessage:
    return EpisodeMessage(
        device=device,
        start_ms=e.start_ms,
        end_ms=e.end_ms,
        activity=e.activity,
        mean_confidence=round(e.mean_confidence, 4),
        windows=e.windows,
    )


def decode_message(raw: bytes) -> EpisodeMessage:
    return msgspec.json.decode(raw, type=EpisodeMessage)


@dataclass(frozen=True)
class Bucket:
    """The time of each activity in one hour or day: ``{activity: milliseconds}``."""

    start_ms: int
    ms: dict[str, int] = field(default_factory=dict)

    def add(self, activity: str, ms: int) -> Bucket:
        return Bucket(self.start_ms, {**self.ms, activity: self.ms.get(activity, 0) + ms})

    def member(self) -> str:
        """The member of ``act:hour``/``act:day``: JSON ``{"t": start, activity: minutes}``
        (keys sorted, so the same totals give the same member)."""
        row: dict[str, Any] = {a: round(v / 60_000, 3) for a, v in self.ms.items()}
        row["t"] = self.start_ms
        return msgspec.json.encode(row, order="sorted").decode()


#: the open episode: start, end, activity, sum of confidences (millionths), windows
Open = tuple[int, int, str, int, int]


@dataclass(frozen=True)
class TrackerState:
    """What a device's episode tracker holds between two batches (checkpointed)."""

    open: Open | None = None
    last_start: int | None = None
    hour: Bucket | None = None
    day: Bucket | None = None

    @property
    def open_episode(self) -> Episode | None:
        return None if self.open is None else _episode(self.open)

    def to_wire(self) -> dict[str, Any]:
        """msgpack/JSON-serialisable form (exact: ints and strings)."""

        def b(x: Bucket | None) -> Any:
            return None if x is None else [x.start_ms, dict(x.ms)]

        return {
            "open": None if self.open is None else list(self.open),
            "last": self.last_start,
            "hour": b(self.hour),
            "day": b(self.day),
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> TrackerState:
        def b(x: Any) -> Bucket | None:
            return (
                None if x is None else Bucket(int(x[0]), {str(k): int(v) for k, v in x[1].items()})
            )

        o = raw.get("open")
        return cls(
            open=None if o is None else (int(o[0]), int(o[1]), str(o[2]), int(o[3]), int(o[4])),
            last_start=None if raw.get("last") is None else int(raw["last"]),
            hour=b(raw.get("hour")),
            day=b(raw.get("day")),
        )


@dataclass(frozen=True)
class Step:
    """What :func:`advance` produced: the new state, the episodes closed, and every hour and
    day bucket touched with its totals so far (older buckets are final)."""

    state: TrackerState
    closed: list[Episode]
    hours: list[Bucket]
    days: list[Bucket]
    #: the step started an hour (then the buckets past the TTL are trimmed)
    new_hour: bool = False


def advance(
    state: TrackerState, windows: Iterable[Window], *, max_gap_ms: int, hop_ms: int
) -> Step:
    """Feed windows (in start order) to a tracker state; pure."""
    o, last, hour, day = state.open, state.last_start, state.hour, state.day
    closed: list[Episode] = []
    hours: dict[int, Bucket] = {}  # every bucket touched, with its latest totals
    days: dict[int, Bucket] = {}
    for w in windows:
        missing = 0 if last is None else max(0, w.start_ms - last - hop_ms)
        hour = _count(hour, HOUR_MS, w, hop_ms, missing)
        day = _count(day, DAY_MS, w, hop_ms, missing)
        hours[hour.start_ms] = hour
        days[day.start_ms] = day
        last = w.start_ms
        c = micro(w.confidence)
        if o is not None and o[2] == w.activity and w.start_ms <= o[1] + max_gap_ms:
            o = (o[0], max(o[1], w.end_ms), o[2], o[3] + c, o[4] + 1)
            continue
        if o is not None:
            closed.append(_episode(o))
        o = (w.start_ms, w.end_ms, w.activity, c, 1)
    new_hour = bool(hours) and (state.hour is None or set(hours) != {state.hour.start_ms})
    return Step(
        TrackerState(o, last, hour, day),
        closed,
        list(hours.values()),
        list(days.values()),
        new_hour,
    )


def _count(bucket: Bucket | None, size: int, w: Window, hop_ms: int, missing: int) -> Bucket:
    """Add a window's hop (and the missing time before it) to the bucket of its start (a
    new bucket when its start is in the next hour or day)."""
    start = w.start_ms - w.start_ms % size
    if bucket is None or bucket.start_ms != start:
        bucket = Bucket(start)
    bucket = bucket.add(w.activity, hop_ms)
    return bucket.add(NO_DATA, missing) if missing else bucket


def _episode(o: Open) -> Episode:
    return Episode(o[0], o[1], o[2], o[3] / o[4] / MICRO, o[4])


@dataclass
class EpisodeTracker:
    """The incremental form with its state held: feed a device's predictions in order, in
    any chunks."""

    max_gap_ms: int = 100
    hop_ms: int = 2_000
    state: TrackerState = field(default_factory=TrackerState)
    #: the stream worker's note (not checkpointed): windows starting up to here are already
    #: in the device's Redis history (None: not read yet)
    dup_until: int | None = None

    def step(self, windows: Iterable[Window]) -> Step:
        """What feeding ``windows`` would do (the tracker is not changed)."""
        return advance(self.state, windows, max_gap_ms=self.max_gap_ms, hop_ms=self.hop_ms)

    def commit(self, step: Step) -> None:
        self.state = step.state

    def update(self, windows: Iterable[Window]) -> list[Episode]:
        """Add windows (in start order); returns the episodes they closed."""
        s = self.step(windows)
        self.commit(s)
        return s.closed

    @property
    def open(self) -> Episode | None:
        return self.state.open_episode

    def with_state(self, state: TrackerState) -> EpisodeTracker:
        return replace(self, state=state)


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
        conf = sum(micro(w.confidence) for w in run) / len(run) / MICRO
        out.append(Episode(run[0].start_ms, end, run[0].activity, conf, len(run)))
        i = j
    return out


#: {(bucket start ms, activity): milliseconds}
Totals = dict[tuple[int, str], int]


def minute_totals(windows: Iterable[Window], *, hop_ms: int = 2_000, bucket_ms: int) -> Totals:
    """Time (ms) per (bucket start, activity): each window counts its hop; the time between
    windows more than a hop apart counts as NO_DATA."""
    out: Totals = {}
    last: int | None = None
    for w in windows:
        bucket = w.start_ms - w.start_ms % bucket_ms
        out[(bucket, w.activity)] = out.get((bucket, w.activity), 0) + hop_ms
        if last is not None and w.start_ms - last > hop_ms:
            key = (bucket, NO_DATA)
            out[key] = out.get(key, 0) + w.start_ms - last - hop_ms
        last = w.start_ms
    return out


def buckets(totals: Totals) -> dict[int, Bucket]:
    """The buckets of a :func:`minute_totals` result, by start."""
    out: dict[int, Bucket] = {}
    for (t, activity), ms in sorted(totals.items()):
        out[t] = out.get(t, Bucket(t)).add(activity, ms)
    return out


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


@dataclass(frozen=True)
class EpisodeWrite:
    """What the batch script writes for one device (stream_processor.sinks): the closed
    episodes, the open one, the touched buckets; ``through_ms``: the start of the last
    window counted (a write that does not go forward is skipped)."""

    device: str
    through_ms: int
    closed: list[Episode]
    open: Episode | None
    hours: list[Bucket]
    days: list[Bucket]
    #: a new hour started: the buckets past the TTL are trimmed
    new_hour: bool = False


def write_of(device: str, step: Step) -> EpisodeWrite | None:
    """The write of one device's step; None when it counted no window."""
    if step.state.last_start is None or not step.hours:
        return None
    return EpisodeWrite(
        device,
        step.state.last_start,
        step.closed,
        step.state.open_episode,
        step.hours,
        step.days,
        step.new_hour,
    )
