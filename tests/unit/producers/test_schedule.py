from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from producers.config import ReplayConfig
from producers.schedule import (
    PlannedBatch,
    PlannedLabel,
    live_anchor,
    plan_replay,
    timeline_end_ms,
)
from wearmon.schemas import decode_samples, encode
from wearmon.signals.types import GRID_MS

from .helpers import make_rec


def _by_stream(items):
    out = defaultdict(list)
    for it in items:
        if isinstance(it, PlannedBatch):
            out[(it.device, it.sensor)].append(it)
    return out


def test_every_sample_once_in_order_with_exact_values() -> None:
    rec = make_rec(503)
    cfg = ReplayConfig(speed=math.inf, timestamps="original")
    items = list(plan_replay([rec], cfg))
    dues = [it.due_ms for it in items]
    assert dues == sorted(dues)
    streams = _by_stream(items)
    assert len(streams) == 2
    for (_, sensor), batches in streams.items():
        series = rec.accel if sensor == "accel" else rec.gyro
        assert [b.seq for b in batches] == list(range(len(batches)))
        assert all(len(b) == 25 for b in batches[:-1]) and len(batches[-1]) == 503 % 25
        t = np.concatenate([b.t_ms for b in batches])
        xyz = np.concatenate([b.xyz for b in batches])
        np.testing.assert_array_equal(t, series.t_ms)
        np.testing.assert_array_equal(xyz, series.xyz)
        # a batch is due when its last sample was taken
        assert all(b.due_ms == int(b.t_ms[-1] - rec.accel.t_ms[0]) for b in batches)


def test_message_round_trip_keeps_exact_values() -> None:
    rec = make_rec(30, labels=False)
    b = next(iter(plan_replay([rec], ReplayConfig(timestamps="original"))))
    assert isinstance(b, PlannedBatch)
    msg = decode_samples(encode(b.message(sent_ms=123)))
    assert msg.sent_ms == 123 and msg.seq == 0 and msg.unit == "m/s2"
    assert msg.t_ms == b.t_ms.tolist()
    assert msg.x == b.xyz[:, 0].tolist() and msg.z == b.xyz[:, 2].tolist()


def test_per_sample_mode() -> None:
    rec = make_rec(40)
    items = [
        i for i in plan_replay([rec], ReplayConfig(batch_size=1)) if isinstance(i, PlannedBatch)
    ]
    assert len(items) == 80 and all(len(i) == 1 for i in items)


def test_live_timestamps_keep_grid_phase_and_labels_shift_with_samples() -> None:
    rec = make_rec(200)
    anchor = live_anchor(1_750_000_001_234)
    assert anchor % 2000 == 0
    items = list(plan_replay([rec], ReplayConfig(), anchor_ms=anchor))
    batches = [i for i in items if isinstance(i, PlannedBatch) and i.sensor == "accel"]
    labels = [i for i in items if isinstance(i, PlannedLabel)]
    shift = int(batches[0].t_ms[0] - rec.accel.t_ms[0])
    assert shift % GRID_MS == 0
    assert abs(batches[0].t_ms[0] - anchor) <= GRID_MS
    assert [(lab.segment.start_ms - shift, lab.segment.end_ms - shift) for lab in labels] == [
        (s.start_ms, s.end_ms) for s in rec.labels
    ]
    assert all(lab.segment.device == batches[0].device for lab in labels)
    # a label is sent when its segment ends
    assert labels[0].due_ms == rec.labels[0].end_ms - rec.accel.t_ms[0]


def test_virtual_devices_staggered_and_rotating() -> None:
    recs = [make_rec(100, seed=s, subject=str(s)) for s in range(3)]
    cfg = ReplayConfig(devices=5, stagger_s=2.0, timestamps="live")
    items = list(plan_replay(recs, cfg, anchor_ms=0))
    first: dict[str, int] = {}
    values: dict[str, float] = {}
    for it in items:
        if isinstance(it, PlannedBatch) and it.sensor == "accel" and it.device not in first:
            first[it.device] = it.due_ms
            values[it.device] = float(it.xyz[0, 0])
    devs = sorted(first, key=first.get)
    assert len(devs) == 5
    starts = [first[d] for d in devs]
    assert list(np.diff(starts)) == [2000] * 4
    # device i plays recording i mod 3
    assert [values[d] for d in devs] == [float(recs[i % 3].accel.xyz[0, 0]) for i in range(5)]


def test_duration_and_loop() -> None:
    rec = make_rec(100)  # 2 s
    cfg = ReplayConfig(loop=True, duration_s=7.0, timestamps="original")
    items = [i for i in plan_replay([rec], cfg) if isinstance(i, PlannedBatch)]
    assert max(i.due_ms for i in items) < 7000
    acc = [i for i in items if i.sensor == "accel"]
    t = np.concatenate([b.t_ms for b in acc])
    assert (np.diff(t) > 0).all()  # later passes shifted forward
    assert [b.seq for b in acc] == list(range(len(acc)))
    assert sum(len(b) for b in acc) > 3 * 100
    assert timeline_end_ms([rec], cfg) == 7000
    assert timeline_end_ms([rec], ReplayConfig()) == 2000  # last label due


def test_plan_is_deterministic() -> None:
    rec = make_rec(300)
    cfg = ReplayConfig(devices=3)
    a = [(i.due_ms, i.device, getattr(i, "seq", -1)) for i in plan_replay([rec], cfg)]
    b = [(i.due_ms, i.device, getattr(i, "seq", -1)) for i in plan_replay([rec], cfg)]
    assert a == b


def test_counts_are_zero_without_injection() -> None:
    c: Counter[str] = Counter()
    list(plan_replay([make_rec(100)], ReplayConfig(), counts=c))
    assert sum(c.values()) == 0


def test_garmin_rows_are_the_messages(tmp_path: Path) -> None:
    """A Garmin export is replayed as recorded: one message per row of the file."""
    from python_calamine import CalamineWorkbook

    from wearmon.signals.readers import read_garmin_pair
    from wearmon.signals.recording_gen import make_recording

    acc, gyr, _ = make_recording(tmp_path, subject=3, seed=2, max_exercises=1)
    rec = read_garmin_pair(acc, gyr)
    streams = _by_stream(plan_replay([rec], ReplayConfig(speed=math.inf, timestamps="original")))
    for (_, sensor), batches in streams.items():
        path = acc if sensor == "accel" else gyr
        header, *rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
        offsets = header.index("sample_time_offset")
        per_row = [len(str(r[offsets]).strip("[]").split(",")) for r in rows]
        assert [len(b.message().t_ms) for b in batches] == per_row
    # --batch-size overrides the recorded batches
    fixed = _by_stream(plan_replay([rec], ReplayConfig(speed=math.inf, batch_size=10)))
    sizes = {len(b.message().t_ms) for bs in fixed.values() for b in bs[:-1]}
    assert sizes == {10}
