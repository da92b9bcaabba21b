"""Helpers of the chaos experiments: count what reached Redis and the predictions topic."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tests.integration.stream_support import history
from wearmon.settings import Settings
from wearmon.signals.types import Recording, SensorSeries
from wearmon.stack import LocalStack


def topic_counts(settings: Settings, devices: set[str], want: set, timeout: float = 30) -> list:
    from confluent_kafka import Consumer

    from wearmon.schemas import decode_prediction

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"chaos-{time.time()}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([settings.kafka.predictions_topic])
    out: list[tuple[str, int]] = []
    deadline, idle = time.monotonic() + timeout, 0
    try:
        while time.monotonic() < deadline and idle < 6:
            m = c.poll(0.5)
            if m is None or m.error():
                idle += 1 if want <= set(out) else 0
                continue
            idle = 0
            if m.key().decode() in devices:
                p = decode_prediction(m.value())
                out.append((p.device, p.window_start_ms))
    finally:
        c.close()
    return out


def report(name: str, redis_client: Any, settings: Settings, expected: dict) -> None:
    want = {(d, s) for d, e in expected.items() for s in e}
    rows = [(d, int(r["window_start_ms"])) for d in expected for r in history(redis_client, d)]
    topic = topic_counts(settings, set(expected), want)
    for where, got in (("redis", [r for r in rows if r in want]), ("topic", topic)):
        got = [r for r in got if r in want]
        print(
            f"RELIABILITY {name} {where}: expected {len(want)} once {len(set(got))} "
            f"missing {len(want - set(got))} duplicated {len(got) - len(set(got))}"
        )
    assert len(rows) == len(set(rows)), "a window written twice in Redis"
    assert want <= set(rows), f"{len(want - set(rows))} windows missing in Redis"
    assert want <= set(topic), f"{len(want - set(topic))} windows missing on the topic"


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a running process (Linux ``VmHWM``), MB."""
    status = open(f"/proc/{pid}/status").read()  # noqa: SIM115 - /proc, read once
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def service_pid(stack: Settings, name: str) -> int:
    """The pid of one service of the session's stack (kafka, redis, prometheus)."""
    pid = next(s.pid for s in LocalStack(stack).status() if s.name == name)
    assert pid is not None, f"the stack's {name} is not running"
    return int(pid)


def sent_recordings(recordings: Sequence[Recording], cfg: Any) -> dict[str, Recording]:
    """{device: what ``wearmon replay`` with ``cfg`` sends for it, as a Recording}: the
    replay's own plan (``producers.schedule.plan_replay``, the same seeded faults: jitter
    moves these timestamps), each batch once (a duplicate is the same batch again), in
    sequence order (reordering only changes the send order). The batch path of these
    recordings gives the windows the stream must write."""
    from producers.schedule import PlannedBatch, plan_replay

    batches: dict[tuple[str, str], dict[int, PlannedBatch]] = {}
    for item in plan_replay(recordings, cfg):
        if isinstance(item, PlannedBatch):
            batches.setdefault((item.device, item.sensor), {}).setdefault(item.seq, item)

    def series(device: str, sensor: str) -> SensorSeries:
        parts = [b for _, b in sorted(batches[(device, sensor)].items())]
        return SensorSeries(
            sensor,
            np.concatenate([b.t_ms for b in parts]).astype(np.int64),
            np.concatenate([b.xyz for b in parts]),
            parts[0].unit,
        )

    return {
        d: Recording(series(d, "accel"), series(d, "gyro"))
        for d in dict.fromkeys(d for d, _ in batches)
    }
