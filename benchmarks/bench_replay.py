"""Replay throughput at --speed max (1 and 100 devices) and pacing error at --speed 1.

Starts its own isolated local stack (free loopback ports, a temporary data directory) unless
``--bootstrap host:port`` points at a running broker. Data: the seglearn watch recordings
(140 recordings, about 244,000 samples per sensor), 25-sample batches.

    .venv/bin/python benchmarks/bench_replay.py [--bootstrap HOST:PORT] [--pacing-s 20]
"""

from __future__ import annotations

import argparse
import math
import resource
import tempfile
import uuid
from pathlib import Path


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap", default=None, help="a running broker (default: start one)")
    ap.add_argument("--pacing-s", type=float, default=20.0, help="seconds of the speed-1 run")
    ap.add_argument("--pacing-devices", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=25)
    args = ap.parse_args()

    from producers import ReplayConfig, load_seglearn, replay
    from wearmon.settings import Settings
    from wearmon.stack import LocalStack, free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    stack = None
    if args.bootstrap:
        settings = Settings(data_dir=tmp, kafka={"bootstrap_servers": args.bootstrap})
    else:
        ports = sorted({free_port() for _ in range(8)})
        settings = Settings(
            data_dir=tmp,
            ports={"kafka": ports[0], "kafka_controller": ports[1], "redis": ports[2],
                   "prometheus": ports[3]},
        )  # fmt: skip
        stack = LocalStack(settings)
        print("starting a local stack ...", flush=True)
        stack.up(timeout=120)
    try:
        recs = load_seglearn()
        n = sum(len(r.accel) + len(r.gyro) for r in recs)
        print(f"data: {len(recs)} seglearn recordings, {n:,} samples (both sensors)")

        def run(name: str, cfg: ReplayConfig, recs: list = recs) -> None:
            topic = f"bench.{uuid.uuid4().hex[:8]}"
            kafka = settings.kafka.model_copy(
                update={"samples_topic": topic, "labels_topic": topic + ".labels"}
            )
            s = settings.model_copy(update={"kafka": kafka})
            cpu0 = _cpu_s()
            stats = replay(s, recs, cfg)
            cpu = _cpu_s() - cpu0
            summ = stats.summary()
            print(
                f"{name}: {stats.samples:,} samples in {stats.messages:,} messages "
                f"({stats.bytes / 1e6:.1f} MB) in {stats.elapsed_s:.2f} s wall incl. flush -> "
                f"{stats.samples_per_s:,.0f} samples/s acked, {stats.messages_per_s:,.0f} msg/s "
                f"(handed over in {stats.send_s:.2f} s); "
                f"process CPU {cpu:.2f} s ({stats.samples / cpu:,.0f} samples per CPU-s); "
                f"failed {stats.failed}, undelivered {stats.undelivered}"
            )
            if math.isfinite(cfg.speed):
                print(
                    f"  pacing error (send time - due time): p50 {summ['lag_p50_ms']} ms, "
                    f"p99 {summ['lag_p99_ms']} ms, max {summ['lag_max_ms']} ms "
                    f"over {stats.lag.count:,} messages"
                )

        bs = args.batch_size
        run("warm-up (JVM, 20 recordings)", ReplayConfig(speed=math.inf), recs[:20])
        run("speed max, 1 device", ReplayConfig(speed=math.inf, devices=1, batch_size=bs))
        run("speed max, 100 devices", ReplayConfig(speed=math.inf, devices=100, batch_size=bs))
        run(
            "speed max, 1 device, per-sample messages (20 recordings)",
            ReplayConfig(speed=math.inf, batch_size=1),
            recs[:20],
        )
        run(
            f"speed 1, {args.pacing_devices} devices, {args.pacing_s:g} s",
            ReplayConfig(
                speed=1.0,
                devices=args.pacing_devices,
                loop=True,
                duration_s=args.pacing_s,
                stagger_s=0.1,
                batch_size=bs,
            ),
        )
    finally:
        if stack is not None:
            stack.down()


if __name__ == "__main__":
    main()
