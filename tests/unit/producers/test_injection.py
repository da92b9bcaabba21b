"""Each fault and drift flag changes the planned stream as documented (docs/replay.md)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from producers import faults
from producers.config import DriftConfig, FaultConfig, ReplayConfig
from producers.schedule import PlannedBatch, PlannedLabel, plan_replay

from .helpers import make_rec

N = 2000  # 40 s at 50 Hz, 80 batches per sensor


def _plan(faults_: FaultConfig | None = None, drift: DriftConfig | None = None, **kw):
    counts: Counter[str] = Counter()
    cfg = ReplayConfig(
        timestamps="original",
        faults=faults_ or FaultConfig(),
        drift=drift or DriftConfig(),
        **kw,
    )
    items = list(plan_replay([REC], cfg, counts=counts))
    streams = defaultdict(list)
    for it in items:
        if isinstance(it, PlannedBatch):
            streams[it.sensor].append(it)
    return streams, counts, items


REC = make_rec(N)


def _cat(batches, attr):
    return np.concatenate([getattr(b, attr) for b in batches])


# ------------------------------------------------------------------ faults


def test_jitter_moves_timestamps_within_bound_keeps_order_and_values() -> None:
    s, _, _ = _plan(FaultConfig(jitter_ms=5, seed=1))
    t = _cat(s["accel"], "t_ms")
    d = t - REC.accel.t_ms
    assert (np.abs(d) <= 5 + 5).all() and (d != 0).mean() > 0.5
    assert (np.diff(t) > 0).all()
    np.testing.assert_array_equal(_cat(s["accel"], "xyz"), REC.accel.xyz)


def test_jitter_function_bound_and_monotonic() -> None:
    t = np.arange(0, 100_000, 10, dtype=np.int64)
    j = faults.jitter(t, 3, np.random.default_rng(0))
    assert (np.diff(j) > 0).all() and np.abs(j - t).max() <= 6


def test_drop_leaves_seq_holes() -> None:
    s, counts, _ = _plan(FaultConfig(drop=0.2, seed=2))
    seqs = [b.seq for b in s["accel"] + s["gyro"]]
    n_total = 2 * (N // 25)
    assert len(seqs) == n_total - counts["dropped_batches"]
    assert 0.1 * n_total < counts["dropped_batches"] < 0.3 * n_total
    assert len(set(seqs)) < N // 25


def test_duplicate_repeats_batches_with_same_seq_and_content() -> None:
    s, counts, _ = _plan(FaultConfig(duplicate=0.1, seed=3))
    acc = s["accel"]
    seqs = Counter(b.seq for b in acc)
    dups = [q for q, c in seqs.items() if c == 2]
    assert dups and len(acc) == N // 25 + sum(1 for _ in dups)
    for i in range(1, len(acc)):
        if acc[i].seq == acc[i - 1].seq:
            np.testing.assert_array_equal(acc[i].xyz, acc[i - 1].xyz)
    assert counts["duplicated_batches"] == len(acc) + len(s["gyro"]) - 2 * (N // 25)


def test_reorder_within_bound() -> None:
    s, counts, _ = _plan(FaultConfig(reorder=3, seed=4))
    seqs = [b.seq for b in s["accel"]]
    assert sorted(seqs) == list(range(N // 25)) and seqs != sorted(seqs)
    assert max(abs(pos - q) for pos, q in enumerate(seqs)) <= 3
    assert counts["reordered_batches"] > 0
    dues = [b.due_ms for b in s["accel"]]
    assert dues == sorted(dues)  # send slots keep their times


def test_bounded_permutation_never_exceeds_bound() -> None:
    rng = np.random.default_rng(0)
    for k in (1, 2, 5):
        p = faults.bounded_permutation(1000, k, rng)
        assert sorted(p) == list(range(1000))
        assert np.abs(p - np.arange(1000)).max() <= k


def test_gaps_remove_both_sensors_for_the_gap_length() -> None:
    s, counts, _ = _plan(FaultConfig(gap_every_s=8, gap_s=3, seed=5))
    assert counts["gap_batches"] > 0
    for sensor in ("accel", "gyro"):
        dues = np.array([b.due_ms for b in s[sensor]])
        assert np.diff(dues).max() >= 3000 - 500
    clock = faults.GapClock(8000, 3000, faults.rng_for(5, 0, "gaps"))
    due = np.arange(0, 40_000, 500)
    mask = clock.in_gap(due)
    for a, b in clock.intervals():
        assert mask[(due >= a) & (due < b)].all()
    assert mask.sum() == sum(((due >= a) & (due < b)).sum() for a, b in clock.intervals())


def test_skew_shifts_gyro_only() -> None:
    s, _, _ = _plan(FaultConfig(skew_ms=37))
    np.testing.assert_array_equal(_cat(s["gyro"], "t_ms"), REC.gyro.t_ms + 37)
    np.testing.assert_array_equal(_cat(s["accel"], "t_ms"), REC.accel.t_ms)


def test_fault_streams_are_independent() -> None:
    a, _, _ = _plan(FaultConfig(drop=0.2, seed=9))
    b, _, _ = _plan(FaultConfig(drop=0.2, duplicate=0.2, jitter_ms=3, seed=9))
    assert {x.seq for x in a["accel"]} == {x.seq for x in b["accel"]}


# ------------------------------------------------------------------ drift

AT = 10.0  # s
K = int(AT * 50)  # first drifted sample


def test_gain_and_offset_from_drift_point() -> None:
    s, counts, _ = _plan(drift=DriftConfig(at_s=AT, gain=2.0, offset=1.5, sensors=("accel",)))
    acc = _cat(s["accel"], "xyz")
    np.testing.assert_array_equal(acc[:K], REC.accel.xyz[:K])
    np.testing.assert_allclose(acc[K:], REC.accel.xyz[K:] * 2.0 + 1.5)
    np.testing.assert_array_equal(_cat(s["gyro"], "xyz"), REC.gyro.xyz)
    assert counts["drift_samples"] > 0


def test_noise_from_drift_point() -> None:
    s, _, _ = _plan(drift=DriftConfig(at_s=AT, noise=0.5, seed=1))
    d = _cat(s["accel"], "xyz") - REC.accel.xyz
    assert (d[:K] == 0).all()
    assert d[K:].std() == pytest.approx(0.5, rel=0.1)


def test_axis_swap_and_mirror() -> None:
    s, _, _ = _plan(drift=DriftConfig(at_s=0, axes="y,x,-z"))
    acc = _cat(s["accel"], "xyz")
    np.testing.assert_array_equal(acc[:, 0], REC.accel.xyz[:, 1])
    np.testing.assert_array_equal(acc[:, 1], REC.accel.xyz[:, 0])
    np.testing.assert_array_equal(acc[:, 2], -REC.accel.xyz[:, 2])
    m, _, _ = _plan(drift=DriftConfig(at_s=0, axes="mirror"))
    np.testing.assert_array_equal(_cat(m["accel"], "xyz")[:, 0], -REC.accel.xyz[:, 0])
    g = _cat(m["gyro"], "xyz")
    np.testing.assert_array_equal(g[:, 0], REC.gyro.xyz[:, 0])
    np.testing.assert_array_equal(g[:, 1:], -REC.gyro.xyz[:, 1:])


def test_sampling_rate_change() -> None:
    s, _, _ = _plan(drift=DriftConfig(at_s=AT, rate_hz=25.0))
    t = _cat(s["accel"], "t_ms")
    assert np.median(np.diff(t[: K - 1])) == 20
    assert np.median(np.diff(t[K:])) == 40
    assert abs(t.shape[0] - (K + (N - K) / 2)) <= 2
    assert (np.diff(t) > 0).all()


def test_replacement_by_another_subject() -> None:
    donor = make_rec(300, seed=42, subject="7", labels=False, t0=5_000_000)
    donor = type(donor)(
        accel=donor.accel,
        gyro=donor.gyro,
        labels=(type(REC.labels[0])(5_000_000, 5_006_000, "DONOR"),),
        subject="7",
    )
    s, _, items = _plan(drift=DriftConfig(at_s=AT, donor=(donor,)))
    acc = _cat(s["accel"], "xyz")
    np.testing.assert_array_equal(acc[:K], REC.accel.xyz[:K])
    np.testing.assert_allclose(acc[K : K + 300], donor.accel.xyz)  # same 50 Hz phase
    labels = [i.segment for i in items if isinstance(i, PlannedLabel)]
    names = [seg.label for seg in labels]
    assert "DONOR" in names and "A" in names and "B" not in names  # B starts after 10 s
    a = next(seg for seg in labels if seg.label == "A")
    assert a.end_ms == REC.accel.t_ms[K]  # clipped at the drift point
    assert min(seg.start_ms for seg in labels if seg.label == "DONOR") == REC.accel.t_ms[K]


def test_drift_only_on_first_devices() -> None:
    cfg = ReplayConfig(devices=2, drift=DriftConfig(gain=3.0, devices=1), timestamps="original")
    firsts: dict[str, float] = {}
    for it in plan_replay([REC], cfg):
        if isinstance(it, PlannedBatch) and it.sensor == "accel":
            firsts.setdefault(it.device, float(it.xyz[0, 0]))
    vals = sorted(firsts.values(), key=abs)
    assert vals[1] == pytest.approx(3.0 * vals[0])
