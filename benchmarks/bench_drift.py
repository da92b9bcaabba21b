"""Drift check benchmark and evaluation on the real seglearn watch windows (printed figures).

    python benchmarks/bench_drift.py                 # one check: 10,000 reference x 2,000 live
    python benchmarks/bench_drift.py --table --json out.json  # reference 1k/10k/100k x live sizes
    python benchmarks/bench_drift.py --evaluate      # false alarms / detection, held-out subjects
    python benchmarks/bench_drift.py --service-cpu   # the monitor's CPU beside 1,000 devices
    python benchmarks/bench_drift.py --delay         # detection delay, replayed in device time

The timing uses windows cut with a 20-sample hop (overlapping, so there are enough): the
reference from subjects 1-8, the live windows from subjects 9 and 10, drawn to the sizes asked.
``--table`` times, for each reference size, building the reference (once per champion in the
monitor) and, for each live size, one check with the monitor's default CheckConfig (it reads
the newest ``max_live`` = 2,000 live windows; a larger live size raises ``max_live`` to it),
median and range over ``--repeats`` checks.
``--evaluate`` holds out each subject in turn: calibration (itself leave-one-subject-out) on
the other nine, then checks of 100 consecutive windows of the held-out subject (half
overlapping), clean and with injected drift (gain x1.25, x1.5 on both sensors, axis swap x<->y,
the other wrist), and per-device checks of 30 windows. ``--service-cpu`` runs the monitor's
loop (default settings) for a minute against its own redis-server while a separate writer
process adds the ``feat:live`` entries of N devices (one window per device every 2 s) and
prints the monitor's CPU time over that minute. ``--delay`` replays, in device time and
without the pipeline, N devices each playing the windows of subject 9 or 10 from its own
starting point (one window per device every 2 s), reference and calibration from subjects
1-8, the pure check every ``interval`` device-seconds on the windows since the previous one
and the trigger policy with its defaults; drift from ``onset`` on. Run it niced on a shared
machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import warnings

import numpy as np

from monitoring import keys
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


def cost_table(refs: list[int], lives: list[int], repeats: int) -> dict[str, object]:
    """Seconds to build a reference of each size and to check each live size against it."""
    import os

    import pandas as pd

    from monitoring.calibration import calibrate
    from monitoring.drift import CheckConfig, build_reference, check
    from wearmon.signals.features import FEATURE_NAMES, features_frame, window_features

    x, groups = _data()
    cal = calibrate(features_frame(x), groups)
    xo, go = _data(hop=20)
    rng = np.random.default_rng(0)
    # features of every candidate window once; the sizes are drawn from them (a window's
    # features do not depend on the others)
    ref_pool = window_features(xo[~np.isin(go, ["9", "10"])])
    live_pool = window_features(xo[np.isin(go, ["9", "10"])])
    load_start = os.getloadavg()
    rows = []
    for n_ref in refs:
        ref_f = ref_pool[rng.choice(len(ref_pool), n_ref, replace=n_ref > len(ref_pool))]
        frame = pd.DataFrame(ref_f, columns=FEATURE_NAMES)
        builds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ref = build_reference(frame, version="1", calibration=cal, cfg=CheckConfig())
            builds.append(time.perf_counter() - t0)
        for n_live in lives:
            cfg = CheckConfig(max_live=max(CheckConfig().max_live, n_live))
            live_f = live_pool[rng.choice(len(live_pool), n_live, replace=n_live > len(live_pool))]
            devices = np.asarray([f"dev-{i % 50}" for i in range(n_live)])
            batch = dataclasses.replace(_batch(live_f), devices=devices)
            check(batch, ref, 0, cfg)  # warm-up
            times = []
            for i in range(repeats):
                t0 = time.perf_counter()
                check(batch, ref, i + 1, cfg)
                times.append(time.perf_counter() - t0)
            row = {
                "reference": n_ref,
                "live": n_live,
                "max_live": cfg.max_live,
                "build_s": _spread(builds),
                "check_s": _spread(times),
            }
            b, c = row["build_s"]["median"], row["check_s"]["median"]
            print(f"reference {n_ref:>7,} x live {n_live:>6,}: build {b:.3f} s, check {c:.3f} s",
                  flush=True)  # fmt: skip
            rows.append(row)
    return {
        "repeats": repeats,
        "devices": 50,
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "reference_pool_windows": len(ref_pool),
        "rows": rows,
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


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


_WRITER = """
import json, sys, time
import numpy as np, redis
port, devices, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
feats = np.load(sys.argv[4])
key = sys.argv[5]
r = redis.Redis(port=port)
rate = devices / 2.0  # windows per second
t0 = time.monotonic(); sent = 0; i = 0
while time.monotonic() - t0 < seconds:
    due = int((time.monotonic() - t0) * rate)
    pipe = r.pipeline(transaction=False)
    for _ in range(due - sent):
        f = feats[i % len(feats)]; i += 1
        pipe.xadd(key, {"device": f"dev-{i % devices}", "window_start_ms": i,
                  "model_version": "1", "label": "ROW", "confidence": "0.9",
                  "f": json.dumps(np.round(f, 6).tolist())}, maxlen=50000, approximate=True)
    pipe.execute(); sent = due
    time.sleep(0.05)
print(sent)
"""


def service_cpu(devices: int, seconds: float) -> None:
    import resource
    import subprocess
    import sys
    import tempfile
    import threading
    from pathlib import Path

    import pandas as pd
    import redis

    from monitoring.calibration import calibrate
    from monitoring.drift import build_reference
    from monitoring.service import CheckOutcome, Monitor
    from wearmon.settings import MonitorSettings, RedisSettings, Settings
    from wearmon.signals.features import FEATURE_NAMES, features_frame, window_features
    from wearmon.stack import free_port

    x, groups = _data()
    ref_rows = ~np.isin(groups, ["9", "10"])
    cal = calibrate(features_frame(x[ref_rows]), groups[ref_rows])
    ref = build_reference(pd.DataFrame(window_features(x[ref_rows]), columns=FEATURE_NAMES),
                          version="1", calibration=cal)  # fmt: skip
    live = window_features(x[~ref_rows])

    class Fixed:
        def champion(self) -> str:
            return "1"

        def get(self, version: str) -> object:
            return ref

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                                   "--appendonly", "no", "--dir", tmp],
                                  stdout=subprocess.DEVNULL)  # fmt: skip
        np.save(Path(tmp) / "f.npy", live)
        try:
            time.sleep(0.5)
            client = redis.Redis(port=port)
            settings = Settings(
                data_dir=Path(tmp) / "data",
                redis=RedisSettings(url=f"redis://127.0.0.1:{port}/0"),
                monitor=MonitorSettings(retrain=False),
            )
            mon = Monitor(settings, client, references=Fixed())  # type: ignore[arg-type]
            writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(port), str(devices),
                                       str(seconds), str(Path(tmp) / "f.npy"),
                                       keys.FEATURES_KEY],
                                      stdout=subprocess.PIPE, text=True)  # fmt: skip
            stop = threading.Event()
            checks: list[float] = []
            orig = mon.check_once

            def timed() -> CheckOutcome:
                t = time.perf_counter()
                out = orig()
                checks.append(time.perf_counter() - t)
                return out

            mon.check_once = timed  # type: ignore[method-assign]
            timer = threading.Timer(seconds, stop.set)
            timer.start()
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            mon.run(stop)
            r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - t0
            sent = int(writer.communicate(timeout=60)[0].strip() or 0)
        finally:
            server.terminate()
            server.wait(timeout=10)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(f"{devices} devices ({sent} windows written in {seconds:.0f} s), monitor defaults:")
    print(
        f"  monitor CPU {cpu:.2f} s in {wall:.1f} s = {cpu / wall:.1%} of one core; "
        f"{len(checks)} checks, median {statistics.median(checks):.3f} s each"
    )


def delay(devices: int, interval_s: float, onset_s: float, after_s: float) -> None:
    from monitoring.calibration import calibrate
    from monitoring.drift import CheckConfig, build_reference, check
    from monitoring.policy import DRIFT, Check, PolicyConfig, PolicyState, step
    from wearmon.signals.features import features_frame, window_features

    x, groups = _data()
    train = ~np.isin(groups, ["9", "10"])
    prof = features_frame(x[train])
    cfg = CheckConfig()
    ref = build_reference(prof, version="1", calibration=calibrate(prof, groups[train]), cfg=cfg)
    live = {s: x[groups == s] for s in ("9", "10")}
    pol = PolicyConfig()  # the defaults: 2 of 3, at least 100 windows
    print(f"{devices} devices, a check every {interval_s:.0f} device-s, drift at {onset_s:.0f} s")
    print("| drift | clean checks alarmed | first drifted check after onset | policy DRIFT after |")
    print("|---|---|---|---|")
    for d in DRIFTS:
        feats = {s: (window_features(w), window_features(inject(w, d))) for s, w in live.items()}
        st, t, first, trig, fa, clean = PolicyState(), 0.0, None, None, 0, 0
        # windows since the last check that ran (as the cursor), in stream order: by window
        # time, devices interleaved
        rows: list[tuple[int, int, np.ndarray]] = []
        while t < onset_s + after_s:
            t0, t = t, t + interval_s
            for k in range(devices):
                subj = ("9", "10")[k % 2]
                clean_f, drift_f = feats[subj]
                for w in np.arange(np.ceil(t0 / 2), np.ceil(t / 2), dtype=int):
                    i = (w + 37 * k) % len(clean_f)
                    rows.append((int(w), k, drift_f[i] if 2 * w >= onset_s else clean_f[i]))
            if len(rows) < pol.min_windows:
                continue  # skipped: the windows wait for the next check
            rows.sort(key=lambda r: (r[0], r[1]))
            batch = dataclasses.replace(
                _batch(np.asarray([r[2] for r in rows])),
                devices=np.asarray([f"dev-{r[1]}" for r in rows]),
            )
            rows = []
            res = check(batch, ref, int(t * 1000), cfg)
            step_ = step(st, Check(int(t * 1000), res.drifted, len(batch), res.score), pol)
            st = step_.state
            if t <= onset_s:
                clean += 1
                fa += int(res.drifted)
            else:
                if first is None and res.drifted:
                    first = t - onset_s
                if trig is None and any(tr.to_state == DRIFT for tr in step_.transitions):
                    trig = t - onset_s

        def fmt(v: float | None) -> str:
            return "never" if v is None else f"{v:.0f} s"

        print(f"| {d} | {fa} of {clean} | {fmt(first)} | {fmt(trig)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=int, default=10_000)
    ap.add_argument("--live", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--evaluate", action="store_true", help="held-out false alarms/detection")
    ap.add_argument("--service-cpu", action="store_true", help="the monitor's CPU beside N devices")
    ap.add_argument("--devices", type=int, default=1_000)
    ap.add_argument("--delay", action="store_true", help="detection delay in device time")
    ap.add_argument("--interval", type=float, default=30.0, help="--delay: check interval")
    ap.add_argument("--onset", type=float, default=1800.0, help="--delay: drift onset, s")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--table", action="store_true", help="cost against reference and live size")
    ap.add_argument("--references", default="1000,10000,100000", help="--table: reference sizes")
    ap.add_argument("--lives", default="100,500,2000,10000", help="--table: live sizes")
    ap.add_argument("--json", default=None, help="--table: write the table here as JSON")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    if args.table:
        out = cost_table(
            [int(v) for v in args.references.split(",")],
            [int(v) for v in args.lives.split(",")],
            args.repeats,
        )
        if args.json:
            import json
            from pathlib import Path

            Path(args.json).write_text(json.dumps(out, indent=2))
    elif args.evaluate:
        evaluate()
    elif args.service_cpu:
        service_cpu(args.devices, args.seconds)
    elif args.delay:
        delay(args.devices, args.interval, args.onset, after_s=300.0)
    else:
        bench_check(args.reference, args.live, args.repeats)


if __name__ == "__main__":
    main()
