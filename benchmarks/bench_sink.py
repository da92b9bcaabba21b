"""Benchmark: the Redis sink's write of one batch (``RedisSink.write``), on a single
redis-server and on a Redis Cluster of 3 primaries, in the same run on this machine.

    .venv/bin/python benchmarks/bench_sink.py [--devices 100,1000] [--batches 30]

Each batch is what the worker writes at a checkpoint of a busy partition: one prediction
per device (with its 40 features and raw window off), and one checkpoint holding every
device's state (600 bytes each). Every batch has new windows (the next window start). It
prints the median and the 90th percentile of a batch write, and the windows per second.

``--server-cpu`` also measures what the Redis servers spend (``INFO cpu`` of every primary
before and after the batches: CPU ms per 1,000 windows) with the features and, in a second
pass, without them (``features=None``): on the cluster the difference on the primary of the
``{stream}`` slot is what the one feature stream costs the one primary that holds it, so
``1 s / that`` is the most windows per second a Redis Cluster of any size takes in before
that primary's core is full.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from stream_processor.sinks import Checkpoint, RedisSink, checkpoint_key
from wearmon.schemas import Prediction
from wearmon.settings import REDIS_BUS_OFFSET, Settings
from wearmon.stack import LocalStack, free_port


def _port_base(nodes: int) -> int:
    import random

    from wearmon.stack import port_open

    while True:
        base = random.randrange(20_000, 32_000)
        ports = [base + i * 10 + off for i in range(nodes) for off in (0, REDIS_BUS_OFFSET)]
        if not any(port_open(p) for p in ports):
            return base


def _server_cpu(sink: RedisSink) -> dict[str, float]:
    """CPU seconds (user + sys) so far of each primary: {"host:port": seconds}."""
    if not sink.cluster:
        info = sink.client.info("cpu")
        return {"server": float(info["used_cpu_user"]) + float(info["used_cpu_sys"])}
    out = {}
    for node in sink.client.get_primaries():
        info = sink.client.info("cpu", target_nodes=node)
        out[f"{node.host}:{node.port}"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return out


def _batches(
    sink: RedisSink, devices: int, batches: int, *, features: bool = True, first: int = 0
) -> list[float]:
    ids = [f"bench-{i:05d}" for i in range(devices)]
    feats = np.random.default_rng(0).normal(size=(devices, 40))
    key = checkpoint_key("bench", "t", 0, "tid")
    state = b"s" * 600
    out = []
    for b in range(first, first + batches):
        start = 1_000 + b * 2_000
        preds = [
            Prediction(device=d, window_start_ms=start, window_end_ms=start + 4_000,
                       label="WALK", confidence=0.9, probs=[0.9, 0.1], model_version="1",
                       processed_ms=start + 4_500, latency_ms=300.0)
            for d in ids
        ]  # fmt: skip
        ckpt = Checkpoint(key, 0, b, dict.fromkeys(ids, state))
        t0 = time.perf_counter()
        res = sink.write(preds, feats if features else None, [ckpt], guards=[(key, b - 1)])
        out.append(time.perf_counter() - t0)
        assert all(res.new), "a window of the benchmark was not new"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="100,1000")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--single-only", action="store_true", help="No Redis Cluster run.")
    ap.add_argument(
        "--server-cpu",
        action="store_true",
        help="Also the servers' CPU per 1,000 windows, with and without the features.",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        single = Settings(data_dir=Path(tmp) / "single", ports={"redis": free_port()})
        cluster = Settings(
            data_dir=Path(tmp) / "cluster",
            ports={"redis": _port_base(3), "redis_step": 10},
            stack={"redis_shards": 3},
        )
        stacks = [LocalStack(single), LocalStack(cluster)]
        try:
            for s in stacks:
                s.up(timeout=60, services=["redis"])
            for n in (int(x) for x in args.devices.split(",")):
                runs = [("single server", single), ("cluster of 3", cluster)]
                for name, settings in runs[: 1 if args.single_only else 2]:
                    sink = RedisSink.from_settings(settings)
                    sink.client.flushall()
                    times = sorted(_batches(sink, n, args.batches)[3:])  # 3 warm-up batches
                    med, p90 = statistics.median(times), times[int(0.9 * (len(times) - 1))]
                    print(
                        f"{n:>5} devices  {name:<13}  batch write median {med * 1000:7.1f} ms"
                        f"  p90 {p90 * 1000:7.1f} ms  {n / med:9.0f} windows/s"
                    )
                    if args.server_cpu:
                        _print_server_cpu(sink, n, args.batches)
                    sink.client.close()
        finally:
            for s in stacks:
                s.down()


def _print_server_cpu(sink: RedisSink, n: int, batches: int) -> None:
    """The servers' CPU ms per 1,000 windows with features and without, on fresh keys."""
    from stream_processor.sinks import FEATURES_KEY

    home = ""
    if sink.cluster:
        node = sink.client.get_node_from_key(FEATURES_KEY)
        home = f"{node.host}:{node.port}"
    per: dict[bool, dict[str, float]] = {}
    for features in (True, False):
        sink.client.flushall()
        _batches(sink, n, 3, features=features)  # warm-up (scripts, new keys)
        c0 = _server_cpu(sink)
        _batches(sink, n, batches, features=features, first=3)
        c1 = _server_cpu(sink)
        per[features] = {k: 1e6 * (c1[k] - c0[k]) / (n * batches) for k in c1}
    for k in per[True]:
        with_f, without = per[True][k], per[False][k]
        tag = "  (the {stream} slot)" if k == home else ""
        print(
            f"      server {k:<16} CPU per 1,000 windows: {with_f:6.1f} ms with the features, "
            f"{without:6.1f} ms without{tag}"
        )
    if home:
        extra = per[True][home] - per[False][home]
        if extra > 0:
            print(
                f"      the feature stream costs its primary {extra:.1f} ms per 1,000 windows: "
                f"that core is full at about {1e6 / extra:,.0f} windows/s"
            )


if __name__ == "__main__":
    main()
