import numpy as np
import pytest

from tests.unit.signals.helpers import series
from wearmon.settings import SignalSettings
from wearmon.signals.grid import fuse_to_grid
from wearmon.signals.stream import IncrementalWindower
from wearmon.signals.types import GRID_MS, LabelSpan, Recording, SensorSeries
from wearmon.signals.windows import make_windows, window_phase_ms, window_recording


def _linear(sensor: str, t: np.ndarray) -> SensorSeries:
    xyz = np.stack([t * 0.001, -t * 0.002, np.full(t.shape, 3.0)], axis=1).astype(np.float64)
    return SensorSeries(sensor, t.astype(np.int64), xyz, "x")


def test_grid_is_anchored_and_exact_on_linear_signals() -> None:
    ta = np.arange(1_000_003, 1_010_000, 7)
    tg = np.arange(1_000_011, 1_012_000, 9)
    g = fuse_to_grid(_linear("accel", ta), _linear("gyro", tg))
    assert g.t_ms[0] == 1_000_020 and np.all(g.t_ms % GRID_MS == 0)
    assert np.all(np.diff(g.t_ms) == GRID_MS)
    assert g.t_ms[-1] <= min(ta[-1], tg[-1])
    assert g.values.dtype == np.float32 and g.values.shape == (len(g), 6)
    assert np.allclose(g.values[:, 0], g.t_ms * 0.001, rtol=1e-6)
    assert np.allclose(g.values[:, 4], -g.t_ms * 0.002, rtol=1e-6)
    assert g.valid.all()


def test_gap_marks_points_invalid_only_across_the_gap() -> None:
    t = np.concatenate([np.arange(0, 5000, 10), np.arange(5150, 10_000, 10)]) + 2_000_000
    g = fuse_to_grid(_linear("accel", t), _linear("gyro", np.arange(2_000_000, 2_010_000, 10)))
    bad = g.t_ms[~g.valid] - 2_000_000
    assert bad.tolist() == list(range(5000, 5150, 20))  # 4990 -> 5150: points 5000..5140
    g2 = fuse_to_grid(
        _linear("accel", t), _linear("gyro", np.arange(2_000_000, 2_010_000, 10)), max_gap_ms=200
    )
    assert g2.valid.all()


def test_windows_are_grid_anchored_and_gap_windows_skipped() -> None:
    rng = np.random.default_rng(1)
    a = series(rng, "accel", 3_333_333, 6000)
    gy = series(rng, "gyro", 3_333_400, 6000)
    g = fuse_to_grid(a, gy)
    res = make_windows(g)
    w = res.windows
    assert len(w) > 10 and w.labels is None
    assert np.all(w.start_ms % 2000 == 0)
    assert np.all(np.diff(w.start_ms) == 2000)
    assert w.x.shape == (len(w), 200, 6) and w.x.dtype == np.float32
    i = int(np.searchsorted(g.t_ms, w.start_ms[3]))
    assert np.array_equal(w.x[3], g.values[i : i + 200])
    # punch a gap: windows covering it are skipped and counted
    t = a.t_ms
    keep = (t < t[2500]) | (t > t[2500] + 500)
    a2 = SensorSeries("accel", t[keep], a.xyz[keep], a.unit)
    res2 = make_windows(fuse_to_grid(a2, gy))
    assert res2.skipped["gap"] == 2
    assert len(res2.windows) == len(w) - 2


def test_window_phase_per_device() -> None:
    rng = np.random.default_rng(2)
    g = fuse_to_grid(series(rng, "accel", 3_333_333, 6000), series(rng, "gyro", 3_333_400, 6000))
    base = make_windows(g).windows
    for phase in (20, 740, 1980):
        w = make_windows(g, phase_ms=phase).windows
        assert np.all(w.start_ms % 2000 == phase) and np.all(np.diff(w.start_ms) == 2000)
        assert abs(len(w) - len(base)) <= 1
        i = int(np.searchsorted(g.t_ms, w.start_ms[2]))
        assert np.array_equal(w.x[2], g.values[i : i + 200])
    for bad in (10, -20, 2000):
        with pytest.raises(ValueError, match="window phase"):
            make_windows(g, phase_ms=bad)
        with pytest.raises(ValueError, match="window phase"):
            IncrementalWindower(phase_ms=bad)
    # the phase of a device: fixed by its id (not Python's salted hash), on the 20 ms grid
    # inside the hop, spread over the hop across devices; 0 when off or without a device
    devices = [f"watch-{i:04d}" for i in range(1000)]
    phases = [window_phase_ms(d) for d in devices]
    assert phases[:3] == [window_phase_ms(d) for d in devices[:3]]
    assert all(p % 20 == 0 and 0 <= p < 2000 for p in phases)
    counts = np.bincount(np.asarray(phases) // 500, minlength=4)  # quarters of the hop
    assert counts.min() > 200, counts
    assert window_phase_ms("watch-0001", spread=False) == 0 and window_phase_ms(None) == 0
    assert window_phase_ms("a", hop=50) < 1000


def test_labels_majority_and_purity() -> None:
    t = 10_000_000 + GRID_MS * np.arange(1000)  # 20 s on the grid: windows at 0,2,...,16 s
    a, g = _linear("accel", t), _linear("gyro", t)
    t0 = int(t[0])
    labels = (
        LabelSpan(t0, t0 + 9000, "A"),  # A until 9 s
        LabelSpan(t0 + 9000, t0 + 16_000, "B"),
    )
    rec = Recording(a, g, labels=labels)
    res = window_recording(rec, SignalSettings(label_purity=0.8))
    got = dict(zip(((res.windows.start_ms - t0) // 1000).tolist(), res.windows.labels, strict=True))
    # windows [6,10): A 3 s/4 s = 0.75 -> impure; [8,12): B 0.75 impure; [14,18): B 2/4 -> impure
    assert got == {0: "A", 2: "A", 4: "A", 10: "B", 12: "B"}
    assert res.skipped == {"gap": 0, "impure": 3, "unlabeled": 1}  # [16,20) unlabeled
    res2 = window_recording(rec, SignalSettings(label_purity=0.5))
    assert len(res2.windows) == 8
