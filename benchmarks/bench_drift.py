"""Drift check benchmark and evaluation on the real seglearn watch windows (printed figures).

    python benchmarks/bench_drift.py                 # one check: 10,000 reference x 2,000 live
    python benchmarks/bench_drift.py --evaluate      # false alarms / detection, held-out subjects

The timing uses windows cut with a 20-sample hop (overlapping, so there are enough): the
reference from subjects 1-8, the live windows from subjects 9 and 10, drawn to the sizes asked.
``--evaluate`` holds out each subject in turn: calibration (itself leave-one-subject-out) on
the other nine, then checks of 100 consecutive windows of the held-out subject (half
overlapping), clean and with injected drift (gain x1.25, x1.5 on both sensors, axis swap x<->y,
the other wrist), and per-device checks of 30 windows. Run it niced on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import warnings

import numpy as np

from monitoring.drift import LiveBatch

DRIFTS = ("clean", "gain1.25", "gain1.5", "swap", "mirror")


def inject(x: np.ndarray, drift: str) -> np.ndarray:
    """Windows (n, T, 6) with a drift applied (the replay's own definitions)."""
    if drift == "clean":
        return x
    if drift.startswith("gain"):
        return x * float(drift[4:])
    if drift == "swap":  # --drift-axes y,x,z on both sensors
        return x[..., [1, 0, 2, 4, 3, 5]]
    if drift == "mirror":  # accel -x,y,z; gyro x,-y,-z
        return x * np.array([-1, 1, 1, 1, -1, -1], dtype=x.dtype)
    raise ValueError(drift)


def _data(hop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from trainer.datasets import load_dataset

    ds = load_dataset("seglearn", hop=hop)
    order = np.lexsort((ds.start_ms, ds.recording))
    return ds.x[order].astype(np.float64), ds.groups[order].astype(str)


def _batch(f: np.ndarray, device: str = "dev") -> LiveBatch:
    n = len(f)
    return LiveBatch(
        f, np.full(n, device), np.full(n, "ROW"), np.full(n, 0.9),
        np.arange(n, dtype=np.int64) * 2000, np.full(n, "1"),
    )  # fmt: skip


def bench_check(n_ref: int, n_live: int, repeats: int) -> None:
    from monitoring.calibration import calibrate
    from monitoring.drift import CheckConfig, build_reference, check
    from wearmon.signals.features import FEATURE_NAMES, features_frame, window_features

    x, groups = _data()
    t0 = time.perf_counter()
    cal = calibrate(features_frame(x), groups)
    t_cal = time.perf_counter() - t0
    xo, go = _data(hop=20)
    rng = np.random.default_rng(0)
    ref_x = xo[~np.isin(go, ["9", "10"])]
    live_x = xo[np.isin(go, ["9", "10"])]
    ref_f = window_features(ref_x[rng.choice(len(ref_x), n_ref, replace=n_ref > len(ref_x))])
    live_f = window_features(live_x[rng.choice(len(live_x), n_live, replace=n_live > len(live_x))])
    import pandas as pd

    cfg = CheckConfig(max_live=n_live)
    ref = build_reference(pd.DataFrame(ref_f, columns=FEATURE_NAMES), version="1",
                          calibration=cal, cfg=cfg)  # fmt: skip
    devices = np.asarray([f"dev-{i % 50}" for i in range(n_live)])
    batch = dataclasses.replace(_batch(live_f), devices=devices)
    check(batch, ref, 0, cfg)  # warm-up (imports)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        res = check(batch, ref, i + 1, cfg)
        times.append(time.perf_counter() - t0)
    print(f"calibration (leave-one-subject-out, {len(x)} windows, 10 subjects): {t_cal:.1f} s")
    print(f"one check, {n_ref} reference x {n_live} live windows, 50 devices, {repeats} runs:")
    print(f"  median {statistics.median(times):.3f} s, min {min(times):.3f} s, "
          f"max {max(times):.3f} s; score {res.score:.2f}")  # fmt: skip


def evaluate() -> None:
    from monitoring.calibration import calibrate
    from monitoring.drift import CheckConfig, build_reference, check, device_stats
    from wearmon.signals.features import features_frame, window_features

    x, groups = _data()
    cfg = CheckConfig()
    subjects = sorted(set(groups.tolist()), key=int)
    pop = {d: [0, 0] for d in DRIFTS}  # alarms, checks
    dev = {d: [0, 0] for d in DRIFTS}
    alarmed: dict[str, set[str]] = {d: set() for d in DRIFTS}
    for s in subjects:
        own = groups == s
        prof = features_frame(x[~own])
        cal = calibrate(prof, groups[~own], cfg=cfg)
        ref = build_reference(prof, version="1", calibration=cal, cfg=cfg)
        for d in DRIFTS:
            f = window_features(inject(x[own], d))
            for start in range(0, max(1, len(f) - cfg.c2st_live + 1), cfg.c2st_live // 2):
                res = check(_batch(f[start : start + cfg.c2st_live]), ref, start, cfg)
                pop[d][0] += int(res.drifted)
                pop[d][1] += 1
                if res.drifted:
                    alarmed[d].add(s)
            n = cfg.device_windows
            for start in range(0, len(f) - n + 1, n // 2):
                v = device_stats(np.full(n, s), f[start : start + n], n)[s]
                dev[d][0] += int(v / cal["thresholds"]["device"] > 1.0)
                dev[d][1] += 1
        print(f"subject {s}: done", flush=True)
    print("\n| drift | population checks alarmed (100 windows) | subjects alarmed | "
          "device checks alarmed (30 windows) |")  # fmt: skip
    print("|---|---|---|---|")
    for d in DRIFTS:
        a, n = pop[d]
        da, dn = dev[d]
        print(f"| {d} | {a} of {n} ({a / n:.0%}) | {len(alarmed[d])} of {len(subjects)} | "
              f"{da} of {dn} ({da / dn:.0%}) |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=int, default=10_000)
    ap.add_argument("--live", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--evaluate", action="store_true", help="held-out false alarms/detection")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    if args.evaluate:
        evaluate()
    else:
        bench_check(args.reference, args.live, args.repeats)


if __name__ == "__main__":
    main()
