"""Hostile input against the real stack and one real worker (shared by the module).

Each test sends one class of hostile message, then a clean replay of two other devices: that
replay must get every one of its predictions (nothing a sender does stops other devices).
The last test stops the worker with SIGINT, which must take less than 30 s.
"""

from __future__ import annotations

import base64
import hashlib
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stream_processor.sinks import history_key
from tests.integration.stream_support import (
    Run,
    all_predicted,
    checkpointed,
    expected_by_device,
    expected_windows,
    generated_recording,
    history,
    make_run,
    messages_of,
    register_tiny,
    send,
    start_worker,
    stop_worker,
    wait_for,
)
from wearmon.schemas import (
    DEADLETTER_MAX_RAW_BYTES,
    DeadLetter,
    LabelSegment,
    SampleBatch,
    decode_deadletter,
    encode,
)
from wearmon.settings import Settings
from wearmon.signals.types import Recording

pytestmark = pytest.mark.integration


@dataclass
class Pipeline:
    run: Run
    worker: subprocess.Popen[bytes]
    log: Path
    recording: Recording
    redis: Any


@pytest.fixture(scope="module")
def pipeline(
    stack: Settings,
    session_subprocess_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    import redis

    tmp = tmp_path_factory.mktemp("hostile")
    recording = generated_recording(tmp / "rec", subject=2, seed=4, exercises=1)
    run = make_run(stack, session_subprocess_env)
    register_tiny(run.settings, tmp, seed=1)
    log = tmp / "worker.log"
    worker = start_worker(run.env, log)
    client = redis.Redis.from_url(stack.redis.url)
    try:
        yield Pipeline(run, worker, log, recording, client)
    finally:
        stop_worker(worker)
        client.close()


def _producer(settings: Settings) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "message.max.bytes": 2_000_000,
            "linger.ms": 5,
        }
    )


def _send_raw(settings: Settings, items: list[tuple[bytes | None, bytes]], topic: str = "") -> None:
    p = _producer(settings)
    for key, value in items:
        p.produce(topic or settings.kafka.samples_topic, key=key, value=value)
    assert p.flush(30) == 0


def _topic_windows(settings: Settings, devices: set[str], n: int, timeout: float = 20) -> list:
    """(device, window_start_ms) of the predictions of ``devices`` on the predictions
    topic, read from its start until ``n`` are there (and 2 s more for duplicates)."""
    from confluent_kafka import Consumer

    from wearmon.schemas import decode_prediction

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"pred-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([settings.kafka.predictions_topic])
    out: list[tuple[str, int]] = []
    deadline, quiet_until = time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline:
            if len(out) >= n and quiet_until is None:
                quiet_until = time.monotonic() + 2.0
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
            m = c.poll(0.5)
            if m is not None and not m.error() and m.key().decode() in devices:
                p = decode_prediction(m.value())
                out.append((p.device, p.window_start_ms))
    finally:
        c.close()
    return out


def _clean_replay(pl: Pipeline, tag: str, timeout: float = 120) -> None:
    """Two fresh devices replayed: every expected window predicted exactly once in Redis,
    at least once on the predictions topic. Prints the counts (docs/reliability.md)."""
    devices = [f"clean-{tag}-{uuid.uuid4().hex[:6]}-{i}" for i in range(2)]
    expected = expected_by_device(pl.recording, pl.run.settings, devices)
    msgs = [m for d in devices for m in messages_of(pl.recording, d)]
    send(pl.run.settings, msgs)
    wait_for(lambda: all_predicted(pl.redis, expected), timeout, [pl.worker], pl.log,
             f"the clean replay after {tag}")  # fmt: skip
    want = {(d, s) for d, e in expected.items() for s in e}
    redis_rows = [(d, int(r["window_start_ms"])) for d in devices for r in history(pl.redis, d)]
    topic_rows = _topic_windows(pl.run.settings, set(devices), len(want))
    for where, rows in (("redis", redis_rows), ("topic", topic_rows)):
        got = [r for r in rows if r in want]
        print(
            f"RELIABILITY {tag} {where}: expected {len(want)} once {len(set(got))} "
            f"missing {len(want - set(got))} duplicated {len(got) - len(set(got))}"
        )
    assert len(redis_rows) == len(set(redis_rows)), "a window predicted twice in Redis"
    assert want <= set(redis_rows), f"{len(want - set(redis_rows))} windows missing in Redis"
    assert want <= set(topic_rows), f"{len(want - set(topic_rows))} windows missing on Kafka"


def _dead_letters(settings: Settings, want: Any, timeout: float = 30) -> list[DeadLetter]:
    """Dead letters read from the start of the topic until ``want(letters)`` holds."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"dl-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([settings.kafka.deadletter_topic])
    out: list[DeadLetter] = []
    deadline = time.monotonic() + timeout
    try:
        while not want(out) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append(decode_deadletter(m.value()))
    finally:
        c.close()
    return out


def _valid(device: str, t0: int, n: int = 25, sensor: str = "accel") -> SampleBatch:
    return SampleBatch(
        device=device,
        sensor=sensor,  # type: ignore[arg-type]
        t_ms=[t0 + 20 * i for i in range(n)],
        x=[0.1] * n,
        y=[0.2] * n,
        z=[9.8] * n,
        unit="m/s2" if sensor == "accel" else "deg/s",
    )


def test_device_id_like_the_checkpoint_offset_field(pipeline: Pipeline) -> None:
    # in two halves: the second checkpoint of its partition reads what the first one wrote
    msgs = messages_of(pipeline.recording, "__offset__")
    half = len(msgs) // 2
    send(pipeline.run.settings, msgs[:half])
    wait_for(lambda: checkpointed(pipeline.redis, pipeline.run), 60, [pipeline.worker],
             pipeline.log, "the checkpoint of the first half")  # fmt: skip
    send(pipeline.run.settings, msgs[half:])
    _clean_replay(pipeline, "offset-id")
    expected = expected_windows(pipeline.recording, pipeline.run.settings, "__offset__")
    starts = {int(r["window_start_ms"]) for r in history(pipeline.redis, "__offset__")}
    assert set(expected) <= starts, f"{len(set(expected) - starts)} windows of __offset__ missing"


def test_sample_far_in_the_future_is_dead_lettered_and_does_not_blind_its_device(
    pipeline: Pipeline,
) -> None:
    device = f"future-{uuid.uuid4().hex[:6]}"
    ahead = int(time.time() * 1000) + 23 * 3600 * 1000
    _send_raw(pipeline.run.settings, [(device.encode(), encode(_valid(device, ahead)))])
    expected = expected_windows(pipeline.recording, pipeline.run.settings, device)
    send(pipeline.run.settings, messages_of(pipeline.recording, device))
    wait_for(
        lambda: pipeline.redis.xlen(history_key(device)) >= len(expected),
        120,
        [pipeline.worker],
        pipeline.log,
        "the windows of the device after its future sample",
    )
    starts = {int(r["window_start_ms"]) for r in history(pipeline.redis, device)}
    assert set(expected) <= starts
    letters = _dead_letters(pipeline.run.settings, lambda ls: any(d.key == device for d in ls))
    assert any(d.key == device and "future" in d.reason for d in letters), letters
    _clean_replay(pipeline, "future")


def test_huge_device_id_is_dead_lettered(pipeline: Pipeline) -> None:
    device = "x" * 500_000
    raw = [(device.encode(), encode(m)) for m in messages_of(pipeline.recording, device)[:40]]
    _send_raw(pipeline.run.settings, raw)
    letters = _dead_letters(
        pipeline.run.settings, lambda ls: sum(d.raw_size > 500_000 for d in ls) >= 40
    )
    big = [d for d in letters if d.raw_size > 500_000]
    assert len(big) >= 40
    assert all(len(d.raw) <= DEADLETTER_MAX_RAW_BYTES and d.truncated for d in big)
    assert all(d.key is not None and len(d.key) <= 300 for d in big)
    _clean_replay(pipeline, "huge-id")


def test_large_garbage_is_dead_lettered_truncated_with_its_size_and_hash(
    pipeline: Pipeline,
) -> None:
    garbage = bytes(range(256)) * (900_000 // 256)
    _send_raw(pipeline.run.settings, [(b"garbage-key", garbage)])
    letters = _dead_letters(
        pipeline.run.settings, lambda ls: any(d.key == "garbage-key" for d in ls)
    )
    mine = [d for d in letters if d.key == "garbage-key"]
    assert mine, "no dead letter for 900 KB of garbage"
    d = mine[0]
    assert d.truncated and d.raw_size == len(garbage)
    assert d.raw_sha256 == hashlib.sha256(garbage).hexdigest()
    assert d.raw == garbage[: len(d.raw)] and len(d.raw) <= DEADLETTER_MAX_RAW_BYTES
    # the dead letter itself stays under the broker's default message size (1 MB)
    assert len(base64.b64encode(d.raw)) < 1_000_000
    _clean_replay(pipeline, "garbage")


def test_keyless_message_is_dead_lettered(pipeline: Pipeline) -> None:
    device = f"keyless-{uuid.uuid4().hex[:6]}"
    _send_raw(pipeline.run.settings, [(None, encode(_valid(device, 1742802739002)))])
    letters = _dead_letters(
        pipeline.run.settings, lambda ls: any(device.encode() in d.raw for d in ls)
    )
    assert any(device.encode() in d.raw and "key" in d.reason for d in letters), letters
    _clean_replay(pipeline, "keyless")


def test_label_with_absurd_end_is_dead_lettered(pipeline: Pipeline) -> None:
    device = f"label-{uuid.uuid4().hex[:6]}"
    seg = LabelSegment(device=device, start_ms=1742802739002, end_ms=10**19, label="REST")
    _send_raw(
        pipeline.run.settings,
        [(device.encode(), encode(seg))],
        topic=pipeline.run.settings.kafka.labels_topic,
    )
    letters = _dead_letters(pipeline.run.settings, lambda ls: any(d.key == device for d in ls))
    assert any(d.key == device for d in letters), "no dead letter for the absurd label"
    _clean_replay(pipeline, "label")


def test_batch_failing_for_one_device_is_isolated(pipeline: Pipeline) -> None:
    """A device whose Redis history key is not a stream fails every batch it is in: its
    windows are dead-lettered, every other device's are written."""
    device = f"poison-{uuid.uuid4().hex[:6]}"
    pipeline.redis.set(history_key(device), "not a stream")
    send(pipeline.run.settings, messages_of(pipeline.recording, device))
    _clean_replay(pipeline, "poisoned-key")
    letters = _dead_letters(pipeline.run.settings, lambda ls: any(d.key == device for d in ls))
    assert any(d.key == device and "WRONGTYPE" in d.reason for d in letters), letters


def test_worker_stops_on_sigint_within_30_s(pipeline: Pipeline) -> None:
    assert pipeline.worker.poll() is None, "the worker died during the hostile input"
    t0 = time.monotonic()
    pipeline.worker.send_signal(signal.SIGINT)
    try:
        pipeline.worker.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not stop within 30 s of SIGINT")
    assert time.monotonic() - t0 < 30
