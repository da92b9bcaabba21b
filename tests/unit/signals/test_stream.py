"""The incremental windower emits exactly the batch windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearmon.signals.grid import fuse_to_grid
from wearmon.signals.readers import read_garmin_pair
from wearmon.signals.recording_gen import make_recording
from wearmon.signals.stream import IncrementalWindower, concat_windows
from wearmon.signals.types import SensorSeries, Windows
from wearmon.signals.windows import WindowResult, make_windows


def _sensor(rng: np.random.Generator, name: str, start: int, n: int, dt: int, gaps: int):
    d = rng.integers(max(1, dt - dt // 2), dt + dt // 2 + 1, size=n).astype(np.int64)
    for _ in range(gaps):  # a few long gaps (some under, some over max_gap_ms)
        d[rng.integers(0, n)] += int(rng.choice([60, 150, 700, 3000]))
    t = start + np.cumsum(d)
    x = rng.normal(0, 3, size=(n, 3)) + (9.8 if name == "accel" else 0.0)
    return SensorSeries(name, t, x, "")


def _arrivals(rng, acc, gyr, max_delay: int, late_frac: float, late_by: int):
    """(sensor, t, x) samples in arrival order: time + random delay in [0, max_delay]."""
    items = []
    for s in (acc, gyr):
        delay = rng.integers(0, max_delay + 1, size=len(s))
        if late_frac:
            late = rng.random(len(s)) < late_frac
            delay[late] += late_by
        items.append((s.sensor, s.t_ms, s.xyz, s.t_ms + delay))
    sensor = np.concatenate([np.full(len(a[1]), a[0]) for a in items])
    t = np.concatenate([a[1] for a in items])
    x = np.concatenate([a[2] for a in items])
    key = np.concatenate([a[3] for a in items])
    order = np.lexsort((rng.random(key.shape[0]), key))
    return sensor[order], t[order], x[order]


def _feed(w: IncrementalWindower, sensor, t, x, rng, max_chunk: int, restore_at: float = -1):
    """Push runs of same-sensor arrivals in random chunk sizes; maybe persist+restore midway."""
    outs: list[Windows] = []
    i, n = 0, t.shape[0]
    restored = False
    while i < n:
        j = i + 1
        limit = i + int(rng.integers(1, max_chunk + 1))
        while j < n and j < limit and sensor[j] == sensor[i]:
            j += 1
        outs.append(w.push(str(sensor[i]), t[i:j], x[i:j]))
        i = j
        if not restored and restore_at >= 0 and i >= restore_at * n:
            w = IncrementalWindower.from_state(json.loads(json.dumps(w.to_state())))
            restored = True
    outs.append(w.flush())
    return concat_windows(outs, window=w.window), w


def _batch_accepted(sensor, t, x, lateness: int) -> WindowResult:
    """Batch result over the samples the late rule keeps (arrival order; first dup wins)."""
    prior = np.maximum.accumulate(np.concatenate(([np.iinfo(np.int64).min // 2], t[:-1])))
    keep = t >= prior - lateness
    series = []
    for name in ("accel", "gyro"):
        m = keep & (sensor == name)
        ts, xs = t[m], x[m]
        order = np.argsort(ts, kind="stable")
        ts, xs = ts[order], xs[order]
        first = np.concatenate(([True], np.diff(ts) != 0))
        series.append(SensorSeries(name, ts[first], xs[first], ""))
    return make_windows(fuse_to_grid(series[0], series[1]))


def _assert_same(got: Windows, ref: WindowResult) -> None:
    assert np.array_equal(got.start_ms, ref.windows.start_ms)
    assert got.x.dtype == np.float32
    assert np.array_equal(got.x.view(np.uint32), ref.windows.x.view(np.uint32))  # bit-identical


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(50, 2500),
    dt_a=st.integers(4, 25),
    dt_g=st.integers(4, 25),
    offset=st.integers(-3000, 3000),
    gaps=st.integers(0, 4),
    max_chunk=st.integers(1, 60),
    lateness=st.sampled_from([0, 50, 500, 2000]),
    restore_at=st.sampled_from([-1.0, 0.3, 0.8]),
    phase=st.sampled_from([0, 20, 1240, 1980]),
)
def test_incremental_equals_batch_within_lateness(
    seed, n, dt_a, dt_g, offset, gaps, max_chunk, lateness, restore_at, phase
) -> None:
    rng = np.random.default_rng(seed)
    acc = _sensor(rng, "accel", 1_700_000_000_000 + 7, n, dt_a, gaps)
    gyr = _sensor(rng, "gyro", 1_700_000_000_000 + 7 + offset, n * dt_a // dt_g, dt_g, gaps)
    sensor, t, x = _arrivals(rng, acc, gyr, max_delay=lateness, late_frac=0, late_by=0)
    w = IncrementalWindower(lateness_ms=lateness, phase_ms=phase)
    got, w = _feed(w, sensor, t, x, rng, max_chunk, restore_at)
    ref = make_windows(fuse_to_grid(acc, gyr), phase_ms=phase)
    assert np.all(got.start_ms % 2000 == phase)  # the phase survives a state restore too
    assert w.late_dropped == 0 and w.duplicates == 0
    _assert_same(got, ref)
    assert w.windows == len(ref.windows)
    assert w.skipped_gap >= ref.skipped["gap"]


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(300, 2000),
    lateness=st.sampled_from([100, 1000]),
    late_frac=st.sampled_from([0.01, 0.1]),
    dup=st.booleans(),
)
def test_late_samples_dropped_and_counted(seed, n, lateness, late_frac, dup) -> None:
    rng = np.random.default_rng(seed)
    acc = _sensor(rng, "accel", 1_600_000_000_000, n, 10, 1)
    gyr = _sensor(rng, "gyro", 1_600_000_000_013, n, 10, 1)
    sensor, t, x = _arrivals(rng, acc, gyr, lateness // 2, late_frac, late_by=lateness * 3)
    if dup:  # re-send some samples (duplicates) with different values
        k = rng.choice(t.shape[0], size=t.shape[0] // 20, replace=False)
        sensor = np.concatenate((sensor, sensor[k]))
        t = np.concatenate((t, t[k]))
        x = np.concatenate((x, x[k] + 1.0))
    w = IncrementalWindower(lateness_ms=lateness)
    got, w = _feed(w, sensor, t, x, rng, 30)
    _assert_same(got, _batch_accepted(sensor, t, x, lateness))
    assert w.late_dropped > 0
    if dup:
        assert w.duplicates + w.late_dropped >= t.shape[0] // 21


def test_buffer_stays_bounded_and_silent_sensor_does_not_grow_it() -> None:
    rng = np.random.default_rng(5)
    acc = _sensor(rng, "accel", 1_000_000, 60_000, 10, 0)  # 10 minutes
    gyr = _sensor(rng, "gyro", 1_000_000, 20_000, 10, 0)  # stops after ~3.3 minutes
    w = IncrementalWindower()
    peak = 0
    ia = ig = 0
    while ia < len(acc):
        w.push("accel", acc.t_ms[ia : ia + 25], acc.xyz[ia : ia + 25])
        ia += 25
        if ig < len(gyr):
            w.push("gyro", gyr.t_ms[ig : ig + 25], gyr.xyz[ig : ig + 25])
            ig += 25
        peak = max(peak, w.buffered)
    assert peak < 1500  # ~ lateness + one window of both sensors, not minutes
    w.flush()
    assert w.windows == len(make_windows(fuse_to_grid(acc, gyr)).windows)
    assert w.buffered < 1500


def test_state_round_trip_is_json() -> None:
    w = IncrementalWindower(lateness_ms=300, device="dev-1")
    w.push("accel", [1000, 1010], [[0, 0, 9.8], [0.1, 0, 9.7]])
    d = json.loads(json.dumps(w.to_state()))
    w2 = IncrementalWindower.from_state(d)
    assert w2.to_state() == w.to_state() and w2.device == "dev-1"
    with pytest.raises(ValueError):
        IncrementalWindower.from_state({"v": 99})


def test_binary_state_round_trips_through_msgpack_exactly() -> None:
    import msgspec

    rng = np.random.default_rng(5)
    w = IncrementalWindower(lateness_ms=300, device="dev-2")
    for k in range(400):
        t = 1_000_000 + (k // 2) * 50 + np.arange(5) * 10
        w.push("accel" if k % 2 else "gyro", t, rng.normal(0, 3, size=(5, 3)))
    raw = msgspec.msgpack.encode(w.to_state(binary=True))
    w2 = IncrementalWindower.from_state(msgspec.msgpack.decode(raw))
    assert w2.to_state() == w.to_state()
    t = 1_000_000 + 200 * 50 + np.arange(400) * 10
    x = rng.normal(0, 3, size=(400, 3))
    n = 0
    for s in ("accel", "gyro"):
        a, b = w.push(s, t, x), w2.push(s, t, x)
        assert np.array_equal(a.start_ms, b.start_ms) and np.array_equal(a.x, b.x)
        n += len(a)
    assert n > 0


def test_generated_garmin_pair_batch_equals_incremental(tmp_path: Path) -> None:
    acc_p, gyr_p, _ = make_recording(tmp_path, subject=2, max_exercises=2, rest_s=3)
    rec = read_garmin_pair(acc_p, gyr_p)
    ref = make_windows(fuse_to_grid(rec.accel, rec.gyro))
    assert len(ref.windows) > 10
    w = IncrementalWindower(device="watch-1")
    outs = []
    a, g = rec.accel, rec.gyro
    ia = ig = 0
    while ia < len(a) or ig < len(g):  # two sensors sending ~25-sample batches, time-ordered
        if ig >= len(g) or (ia < len(a) and a.t_ms[ia] <= g.t_ms[ig]):
            outs.append(w.push("accel", a.t_ms[ia : ia + 25], a.xyz[ia : ia + 25]))
            ia += 25
        else:
            outs.append(w.push("gyro", g.t_ms[ig : ig + 25], g.xyz[ig : ig + 25]))
            ig += 25
    outs.append(w.flush())
    got = concat_windows(outs)
    _assert_same(got, ref)
    assert got.device == "watch-1"
