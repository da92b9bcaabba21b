"""Replay into the real broker: exactly once, in order, exact values; injections visible;
metrics served; a clean stop on SIGTERM."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer

from producers import DriftConfig, FaultConfig, ReplayConfig, replay
from producers.metrics import ReplayMetrics
from producers.schedule import batch_bounds
from wearmon.errors import ConfigError
from wearmon.schemas import decode_labels, decode_samples
from wearmon.settings import Settings
from wearmon.signals.readers import read_garmin_pair
from wearmon.signals.recording_gen import make_recording

pytestmark = pytest.mark.integration


def _topics(stack: Settings, **extra: object) -> Settings:
    run = uuid.uuid4().hex[:8]
    kafka = stack.kafka.model_copy(
        update={
            "samples_topic": f"test.samples.{run}",
            "labels_topic": f"test.labels.{run}",
            "partitions": 3,
            **extra,
        }
    )
    return stack.model_copy(update={"kafka": kafka})


def _consume(settings: Settings, topic: str, expect: int | None = None, idle_s: float = 3.0):
    """Every message of ``topic`` as (key, value), from the beginning, until idle."""
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[tuple[str, bytes]] = []
    last = time.monotonic()
    deadline = last + 60
    try:
        while time.monotonic() < deadline:
            msgs = c.consume(10_000, timeout=0.5)
            for m in msgs:
                assert m.error() is None, m.error()
                out.append((m.key().decode(), m.value()))
            if msgs:
                last = time.monotonic()
                continue
            quiet = time.monotonic() - last
            enough = expect is None or len(out) >= expect
            if (enough and quiet > (idle_s if expect is None else 1.0)) or quiet > idle_s + 10:
                break
    finally:
        c.close()
    return out


@pytest.fixture(scope="module")
def garmin(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("garmin")
    return make_recording(out, subject=1, seed=0, max_exercises=2, rest_s=2.0)


def test_cli_replay_exactly_once_in_order_exact_values(
    stack: Settings, subprocess_env: dict[str, str], garmin: list[Path]
) -> None:
    settings = _topics(stack)
    env = dict(subprocess_env)
    env["WEARMON_KAFKA__SAMPLES_TOPIC"] = settings.kafka.samples_topic
    env["WEARMON_KAFKA__LABELS_TOPIC"] = settings.kafka.labels_topic
    cmd = [sys.executable, "-m", "wearmon.cli.main", "replay", str(garmin[0]), "--speed",
           "max", "--devices", "2", "--timestamps", "original", "--no-metrics",
           "--no-progress"]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "samples_per_s" in res.stdout

    rec = read_garmin_pair(garmin[0], garmin[1])
    rows = {s.sensor: batch_bounds(s, len(s), None) for s in (rec.accel, rec.gyro)}
    n_msgs = 2 * sum(len(starts) for starts, _ in rows.values())  # one per Garmin row
    got = defaultdict(list)
    for key, raw in _consume(settings, settings.kafka.samples_topic, expect=n_msgs):
        msg = decode_samples(raw)
        assert key == msg.device and msg.sent_ms > 0
        got[(msg.device, msg.sensor)].append(msg)
    assert len({d for d, _ in got}) == 2
    for (_, sensor), msgs in got.items():
        series = rec.accel if sensor == "accel" else rec.gyro
        assert [m.seq for m in msgs] == list(range(len(msgs)))  # in order, none twice
        starts, ends = rows[sensor]
        assert [len(m.t_ms) for m in msgs] == (ends - starts).tolist()  # as recorded
        np.testing.assert_array_equal(np.concatenate([m.t_ms for m in msgs]), series.t_ms)
        xyz = np.stack([np.concatenate([getattr(m, a) for m in msgs]) for a in "xyz"], axis=1)
        np.testing.assert_array_equal(xyz, series.xyz)  # bit-exact floats
        assert {m.unit for m in msgs} == {series.unit}

    labels = defaultdict(list)
    for key, raw in _consume(settings, settings.kafka.labels_topic, expect=2 * len(rec.labels)):
        seg = decode_labels(raw)
        assert key == seg.device
        labels[seg.device].append((seg.start_ms, seg.end_ms, seg.label))
    assert set(labels) == {d for d, _ in got}
    for segs in labels.values():
        assert sorted(segs) == [(s.start_ms, s.end_ms, s.label) for s in rec.labels]


def test_api_replay_injections_visible_and_metrics_served(
    stack: Settings, garmin: list[Path]
) -> None:
    settings = _topics(stack)
    rec = read_garmin_pair(garmin[0], garmin[1])
    cfg = ReplayConfig(
        speed=math.inf,
        timestamps="original",
        faults=FaultConfig(duplicate=0.1, skew_ms=40, seed=1),
        drift=DriftConfig(at_s=0, axes="y,x,-z", sensors=("accel",)),
    )
    metrics = ReplayMetrics()
    assert metrics.serve(settings.metrics.replay_port, addr="127.0.0.1")
    try:
        stats = replay(settings, [rec], cfg, metrics=metrics)
        body = (
            urllib.request.urlopen(
                f"http://127.0.0.1:{settings.metrics.replay_port}/metrics", timeout=5
            )
            .read()
            .decode()
        )
    finally:
        metrics.close()
    assert stats.ok and stats.injected["duplicated_batches"] > 0
    assert (
        stats.messages
        == sum(len(batch_bounds(s, len(s), None)[0]) for s in (rec.accel, rec.gyro))
        + stats.injected["duplicated_batches"]
    )
    assert f'wearmon_replay_messages_total{{kind="samples"}} {float(stats.messages)}' in body
    assert "wearmon_replay_delivered_total" in body and "dev-" not in body

    got = defaultdict(list)
    for _, raw in _consume(settings, settings.kafka.samples_topic, expect=stats.messages):
        msg = decode_samples(raw)
        got[msg.sensor].append(msg)
    for sensor, series in (("accel", rec.accel), ("gyro", rec.gyro)):
        msgs = got[sensor]
        seqs = [m.seq for m in msgs]
        assert len(seqs) > len(set(seqs))  # duplicates arrive
        first = {}
        for m in msgs:
            first.setdefault(m.seq, m)
        uniq = [first[q] for q in sorted(first)]
        t = np.concatenate([m.t_ms for m in uniq])
        x = np.concatenate([m.x for m in uniq])
        z = np.concatenate([m.z for m in uniq])
        if sensor == "accel":  # axis swap visible in the consumed values
            np.testing.assert_array_equal(t, series.t_ms)
            np.testing.assert_array_equal(x, series.xyz[:, 1])
            np.testing.assert_array_equal(z, -series.xyz[:, 2])
        else:  # clock skew visible in the consumed timestamps
            np.testing.assert_array_equal(t, series.t_ms + 40)
            np.testing.assert_array_equal(x, series.xyz[:, 0])


def test_missing_topic_without_creation_is_a_clear_error(
    stack: Settings, garmin: list[Path]
) -> None:
    settings = _topics(stack, create_topics=False)
    rec = read_garmin_pair(garmin[0], garmin[1])
    with pytest.raises(ConfigError, match="does not exist and topic creation is disabled"):
        replay(settings, [rec], ReplayConfig(speed=math.inf))


def test_sigterm_stops_flushes_and_exits_nonzero(
    stack: Settings, subprocess_env: dict[str, str], garmin: list[Path]
) -> None:
    settings = _topics(stack)
    env = dict(subprocess_env)
    env["WEARMON_KAFKA__SAMPLES_TOPIC"] = settings.kafka.samples_topic
    env["WEARMON_KAFKA__LABELS_TOPIC"] = settings.kafka.labels_topic
    cmd = [sys.executable, "-m", "wearmon.cli.main", "replay", str(garmin[0]), "--speed", "10",
           "--loop", "--no-metrics", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in out and "delivered" in out
    sent = int(
        next(ln for ln in out.splitlines() if "│ messages " in ln).split("│")[2].replace(",", "")
    )
    got = _consume(settings, settings.kafka.samples_topic, expect=sent)
    assert len(got) == sent > 0
