"""The incremental form of fuse + window, for streaming (one instance per device).

:class:`IncrementalWindower` accepts samples of either sensor in any chunking, possibly out of
order by up to ``lateness_ms``, and emits exactly the windows that the batch path
``make_windows(fuse_to_grid(accel, gyro))`` gives for the same samples: same starts,
bit-identical float32 values (it calls the same kernels on the buffered samples).

How it decides what is final. ``max_seen`` is the latest sample time seen on either sensor;
a sample older than ``max_seen - lateness_ms`` when it arrives is late: counted and dropped.
So every future sample lies at or after the cutoff ``C = max_seen - lateness_ms``, and a grid
point ``p`` is final for a sensor once that sensor has a buffered sample in ``(p, C)``: both
of its interpolation neighbours can no longer change. A window is decided when its last grid
point is final for both sensors; it is emitted, or counted as ``skipped_gap`` when it holds an
invalid point. A window that is sure to hold a gap (a sensor silent for longer than
``max_gap_ms`` before ``C``) is skipped without waiting, so one silent sensor does not make
the other's buffer grow. Samples that can no longer touch a future window are dropped, which
keeps the state small (a few seconds of samples).

Differences from the batch path, by design: samples dropped as late are not in the result;
duplicate timestamps keep the first arrival; and when a sensor goes silent for good,
``skipped_gap`` also counts windows after its last sample (the batch path does not consider
those windows at all). The windows themselves are identical.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from wearmon.signals.grid import DEFAULT_MAX_GAP_MS, fuse_points
from wearmon.signals.types import GRID_MS, HOP, WINDOW, Windows
from wearmon.signals.windows import (
    check_phase,
    empty_windows,
    first_start_at_or_after,
    last_start_at_or_before,
    make_windows,
)

log = logging.getLogger(__name__)

SENSORS = ("accel", "gyro")
STATE_VERSION = 1
_COUNTERS = ("late_dropped", "duplicates", "skipped_gap", "windows", "samples")


class IncrementalWindower:
    """Streaming fuse + resample + window for one device; see the module docstring."""

    def __init__(
        self,
        *,
        max_gap_ms: int = DEFAULT_MAX_GAP_MS,
        lateness_ms: int = 2000,
        window: int = WINDOW,
        hop: int = HOP,
        device: str | None = None,
        phase_ms: int = 0,
    ) -> None:
        if lateness_ms < 0 or window < 1 or hop < 1:
            raise ValueError("lateness_ms must be >= 0 and window, hop >= 1")
        check_phase(phase_ms, hop)
        self.max_gap_ms = int(max_gap_ms)
        self.lateness_ms = int(lateness_ms)
        self.window = int(window)
        self.hop = int(hop)
        self.device = device
        self.phase_ms = int(phase_ms)
        self._hop_ms = self.hop * GRID_MS
        self._span_ms = (self.window - 1) * GRID_MS
        self._t: dict[str, np.ndarray] = {s: np.empty(0, dtype=np.int64) for s in SENSORS}
        self._x: dict[str, np.ndarray] = {s: np.empty((0, 3), dtype=np.float64) for s in SENSORS}
        self._first: dict[str, int | None] = dict.fromkeys(SENSORS)
        self.max_seen: int | None = None
        self.next_start: int | None = None
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._none: Windows | None = None

    # ------------------------------------------------------------------ properties

    @property
    def late_dropped(self) -> int:
        return self.counters["late_dropped"]

    @property
    def duplicates(self) -> int:
        return self.counters["duplicates"]

    @property
    def skipped_gap(self) -> int:
        return self.counters["skipped_gap"]

    @property
    def windows(self) -> int:
        return self.counters["windows"]

    @property
    def buffered(self) -> int:
        """Samples held in the buffers (both sensors)."""
        return int(self._t["accel"].shape[0] + self._t["gyro"].shape[0])

    # ------------------------------------------------------------------ input

    def push(self, sensor: str, t_ms: Any, xyz: Any) -> Windows:
        """Add samples of one sensor (canonical units); returns the windows they complete."""
        if sensor not in self._t:
            raise ValueError(f"unknown sensor {sensor!r}; use 'accel' or 'gyro'")
        t = np.asarray(t_ms, dtype=np.int64).reshape(-1)
        x = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        if t.shape[0] != x.shape[0]:
            raise ValueError(f"{t.shape[0]} times but {x.shape[0]} samples")
        n = t.shape[0]
        if n == 0:
            return self._empty()
        self.counters["samples"] += n
        prev = self.max_seen
        # fast path (the usual case: an in-order batch): strictly increasing times, the
        # first not late, so none is late (a later sample can only be later than the first)
        d = np.diff(t)
        increasing = bool((d > 0).all())
        if increasing and (prev is None or int(t[0]) >= prev - self.lateness_ms):
            last = int(t[-1])
            self.max_seen = last if prev is None or last > prev else prev
            self._merge(sensor, t, x, increasing=True)
            return self._emit(final=False)
        run = np.maximum.accumulate(t)
        if prev is not None:
            np.maximum(run, prev, out=run)
            prior = np.empty_like(run)
            prior[0] = prev
            prior[1:] = run[:-1]
            late = t < prior - self.lateness_ms
        else:
            late = np.zeros(n, dtype=bool)
            late[1:] = t[1:] < run[:-1] - self.lateness_ms
        self.max_seen = int(run[-1])
        if late.any():
            k = int(late.sum())
            self.counters["late_dropped"] += k
            log.debug("device %s: %d late %s samples dropped", self.device, k, sensor)
            t, x = t[~late], x[~late]
            if t.shape[0] == 0:
                return self._emit(final=False)
            increasing = bool((np.diff(t) > 0).all())
        self._merge(sensor, t, x, increasing=increasing)
        return self._emit(final=False)

    def flush(self) -> Windows:
        """End of stream: emit what the batch path emits for all samples seen."""
        out = self._emit(final=True)
        return out

    # ------------------------------------------------------------------ internals

    def _empty(self) -> Windows:
        # one shared empty result per instance (zero-length arrays: nothing to mutate)
        e = self._none
        if e is None:
            e = self._none = empty_windows(window=self.window, device=self.device)
        return e

    def _merge(self, sensor: str, t: np.ndarray, x: np.ndarray, *, increasing: bool) -> None:
        """Add samples to a sensor's buffer (``increasing``: ``t`` is strictly increasing)."""
        bt, bx = self._t[sensor], self._x[sensor]
        tmin = int(t[0]) if increasing else int(t.min())
        first = self._first[sensor]
        self._first[sensor] = tmin if first is None else min(first, tmin)
        if increasing and (bt.shape[0] == 0 or t[0] > bt[-1]):
            self._t[sensor] = np.concatenate((bt, t)) if bt.shape[0] else t
            self._x[sensor] = np.concatenate((bx, x)) if bt.shape[0] else x
            return
        at = np.concatenate((bt, t))
        ax = np.concatenate((bx, x))
        order = np.argsort(at, kind="stable")  # buffer first, then arrival order
        at, ax = at[order], ax[order]
        dup = np.empty(at.shape[0], dtype=bool)
        dup[0] = False
        np.equal(at[1:], at[:-1], out=dup[1:])
        if dup.any():
            self.counters["duplicates"] += int(dup.sum())
            keep = ~dup
            at, ax = at[keep], ax[keep]
        self._t[sensor], self._x[sensor] = at, ax

    def _emit(self, *, final: bool) -> Windows:
        if self.max_seen is None:
            return self._empty()
        cutoff = self.max_seen - self.lateness_ms
        ta, tg = self._t["accel"], self._t["gyro"]
        out = self._empty()
        if self.next_start is None:
            fa, fg = self._first["accel"], self._first["gyro"]
            if fa is None or fg is None or (not final and (fa >= cutoff or fg >= cutoff)):
                self._prune(cutoff)
                return out
            start = max(fa, fg)
            self.next_start = first_start_at_or_after(start, self._hop_ms, self.phase_ms)
        ns = self.next_start
        # no window can be complete yet: its last point must lie before the last sample
        # before the cutoff (the usual case: one window per hop of pushes)
        possible = final or ns + self._span_ms < cutoff - 1
        if possible and ta.shape[0] and tg.shape[0]:
            if final:
                limit = min(int(ta[-1]), int(tg[-1]))
            else:
                # last buffered sample strictly before the cutoff, per sensor
                ia = int(ta.searchsorted(cutoff, side="left")) - 1
                ig = int(tg.searchsorted(cutoff, side="left")) - 1
                limit = (min(int(ta[ia]), int(tg[ig])) - 1) if ia >= 0 and ig >= 0 else ns - 1
            last_start = last_start_at_or_before(limit - self._span_ms, self._hop_ms, self.phase_ms)
            if last_start >= ns:
                points = np.arange(
                    ns, last_start + self._span_ms + GRID_MS, GRID_MS, dtype=np.int64
                )
                grid = fuse_points(
                    ta, self._x["accel"], tg, self._x["gyro"], points, self.max_gap_ms
                )
                res = make_windows(
                    grid,
                    window=self.window,
                    hop=self.hop,
                    device=self.device,
                    phase_ms=self.phase_ms,
                )
                out = res.windows
                self.counters["skipped_gap"] += res.skipped["gap"]
                self.counters["windows"] += len(out)
                ns = last_start + self._hop_ms
        if not final:
            ns = self._skip_sure_gaps(ns, cutoff)
        self.next_start = ns
        self._prune(cutoff)
        return out

    def _skip_sure_gaps(self, ns: int, cutoff: int) -> int:
        """Skip windows that must hold a gap: a sensor silent over (T, cutoff) > max_gap."""
        if ns >= cutoff:
            return ns
        for s in SENSORS:
            t = self._t[s]
            i = int(t.searchsorted(cutoff, side="left")) - 1
            if i < 0:
                continue
            last = int(t[i])
            if cutoff - last > max(self.max_gap_ms, GRID_MS) and ns + self._span_ms > last:
                n = (cutoff - 1 - ns) // self._hop_ms + 1
                self.counters["skipped_gap"] += n
                return ns + n * self._hop_ms
        return ns

    def _prune(self, cutoff: int) -> None:
        if self.next_start is not None:
            # never drop a sample at or after the cutoff: a re-sent copy of it must still be
            # recognised as a duplicate (everything before the cutoff is late anyway)
            keep_from = min(self.next_start, cutoff)
        else:
            keep_from = cutoff
            for s in SENSORS:
                f = self._first[s]
                if f is not None and f < cutoff:
                    keep_from = max(keep_from, f)
        for s in SENSORS:
            t = self._t[s]
            if t.shape[0] < 2 or t[1] > keep_from:
                continue
            i = int(t.searchsorted(keep_from, side="right")) - 1
            if i > 0:
                self._t[s] = t[i:]
                self._x[s] = self._x[s][i:]

    # ------------------------------------------------------------------ state

    def to_state(self, *, binary: bool = False) -> dict[str, Any]:
        """A JSON/msgspec-serialisable snapshot (floats round-trip exactly through JSON).

        ``binary=True``: the sample buffers as raw little-endian bytes (int64 times, float64
        values) instead of lists: exact as well, for msgpack, and far cheaper to build and
        encode (the stream worker checkpoints every device's state every few seconds)."""
        if binary:
            t: dict[str, Any] = {s: self._t[s].astype("<i8", copy=False).tobytes() for s in SENSORS}
            x: dict[str, Any] = {s: self._x[s].astype("<f8", copy=False).tobytes() for s in SENSORS}
        else:
            t = {s: self._t[s].tolist() for s in SENSORS}
            x = {s: self._x[s].reshape(-1).tolist() for s in SENSORS}
        return {
            "v": STATE_VERSION,
            "params": {
                "max_gap_ms": self.max_gap_ms,
                "lateness_ms": self.lateness_ms,
                "window": self.window,
                "hop": self.hop,
                "device": self.device,
                "phase_ms": self.phase_ms,
            },
            "max_seen": self.max_seen,
            "next_start": self.next_start,
            "first": dict(self._first),
            "t": t,
            "x": x,
            "counters": dict(self.counters),
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> IncrementalWindower:
        """Rebuild from :meth:`to_state` (either form)."""
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported windower state version {d.get('v')!r}")
        self = cls(**d["params"])
        self.max_seen = d["max_seen"]
        self.next_start = d["next_start"]
        self._first = {s: d["first"].get(s) for s in SENSORS}
        for s in SENSORS:
            t, x = d["t"][s], d["x"][s]
            if isinstance(t, bytes | bytearray | memoryview):
                self._t[s] = np.frombuffer(t, dtype="<i8").astype(np.int64)
                self._x[s] = np.frombuffer(x, dtype="<f8").astype(np.float64).reshape(-1, 3)
            else:
                self._t[s] = np.asarray(t, dtype=np.int64)
                self._x[s] = np.asarray(x, dtype=np.float64).reshape(-1, 3)
        self.counters.update({k: int(v) for k, v in d["counters"].items()})
        return self


def concat_windows(parts: list[Windows], *, window: int = WINDOW) -> Windows:
    """Concatenate batches of windows (e.g. the outputs of successive pushes)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_windows(window=window)
    labels = None
    if all(p.labels is not None for p in parts):
        labels = np.concatenate([p.labels for p in parts if p.labels is not None])
    return Windows(
        start_ms=np.concatenate([p.start_ms for p in parts]),
        x=np.concatenate([p.x for p in parts]),
        labels=labels,
        device=parts[0].device,
    )
