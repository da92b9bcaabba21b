"""Signal-core benchmark (not a test). Run: .venv/bin/python benchmarks/bench_signals.py

Generates a one-hour Garmin-style Excel pair at run time (about 14,500 rows and 363,000
samples per sensor at ~100 Hz), then reports:
  - reading the pair (calamine, list-cell parsing, units, repairs)
  - fuse + resample to 50 Hz + window, one hour of both sensors (goal: < 1 s on one core)
  - the incremental windower fed ~25-sample messages vs the batch path (samples/s)
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from wearmon.signals.features import window_features  # noqa: E402
from wearmon.signals.grid import fuse_to_grid  # noqa: E402
from wearmon.signals.readers import read_garmin_pair  # noqa: E402
from wearmon.signals.recording_gen import make_recording  # noqa: E402
from wearmon.signals.stream import IncrementalWindower, concat_windows  # noqa: E402
from wearmon.signals.windows import make_windows, window_recording  # noqa: E402


def best(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration-s", type=float, default=3600.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="keep the generated files here")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    tmp = args.dir or Path(tempfile.mkdtemp(prefix="wearmon-bench-"))
    t = time.perf_counter()
    acc_p, gyr_p, lab_p = make_recording(tmp, subject=1, seed=0, duration_s=args.duration_s)
    print(f"generate pair ({args.duration_s:.0f} s session): {time.perf_counter() - t:.2f} s")

    t_read, rec = best(lambda: read_garmin_pair(acc_p, gyr_p), max(1, args.reps - 1))
    import python_calamine

    rows = [
        len(python_calamine.load_workbook(str(p)).get_sheet_by_index(0).to_python()) - 1
        for p in (acc_p, gyr_p)
    ]
    na, ng = len(rec.accel), len(rec.gyro)  # type: ignore[attr-defined]
    print(
        f"read Excel pair: {t_read:.2f} s  ({rows[0]:,} + {rows[1]:,} rows, "
        f"{na:,} + {ng:,} samples)"
    )

    def batch():
        return make_windows(fuse_to_grid(rec.accel, rec.gyro))  # type: ignore[attr-defined]

    t_fuse, _ = best(lambda: fuse_to_grid(rec.accel, rec.gyro), args.reps)  # type: ignore[attr-defined]
    t_batch, res = best(batch, args.reps)
    t_lab, res_l = best(lambda: window_recording(rec), args.reps)  # type: ignore[arg-type]
    nwin = len(res.windows)  # type: ignore[attr-defined]
    print(f"fuse to 50 Hz grid: {t_fuse * 1000:.0f} ms")
    print(
        f"fuse + resample + window (batch): {t_batch * 1000:.0f} ms -> {nwin:,} windows "
        f"({(na + ng) / t_batch / 1e6:.1f} M samples/s)"
    )
    print(f"  with labels (window_recording): {t_lab * 1000:.0f} ms")
    t_feat, _ = best(lambda: window_features(res.windows.x), args.reps)  # type: ignore[attr-defined]
    print(f"window_features on {nwin:,} windows: {t_feat * 1000:.0f} ms")

    # incremental: interleave both sensors in time order, ~25-sample messages
    a, g = rec.accel, rec.gyro  # type: ignore[attr-defined]
    msgs = []
    ia = ig = 0
    while ia < len(a) or ig < len(g):
        if ig >= len(g) or (ia < len(a) and a.t_ms[ia] <= g.t_ms[ig]):
            msgs.append(("accel", a.t_ms[ia : ia + 25].copy(), a.xyz[ia : ia + 25].copy()))
            ia += 25
        else:
            msgs.append(("gyro", g.t_ms[ig : ig + 25].copy(), g.xyz[ig : ig + 25].copy()))
            ig += 25

    def incremental():
        w = IncrementalWindower()
        outs = [w.push(s, tt, xx) for s, tt, xx in msgs]
        outs.append(w.flush())
        return concat_windows(outs), w

    t_inc, (wins, w) = best(incremental, max(1, args.reps - 1))  # type: ignore[misc]
    same = np.array_equal(wins.start_ms, res.windows.start_ms) and np.array_equal(  # type: ignore[attr-defined]
        wins.x,
        res.windows.x,  # type: ignore[attr-defined]
    )
    print(
        f"incremental windower: {t_inc * 1000:.0f} ms for {len(msgs):,} messages -> "
        f"{(na + ng) / t_inc / 1e6:.2f} M samples/s, {t_inc / len(msgs) * 1e6:.1f} us/message, "
        f"{len(msgs) / t_inc:,.0f} messages/s; batch {(na + ng) / t_batch / 1e6:.1f} M samples/s "
        f"({t_inc / t_batch:.1f}x slower); identical windows: {same}; "
        f"max buffered samples at end: {w.buffered}"
    )
    del lab_p, res_l


if __name__ == "__main__":
    main()
