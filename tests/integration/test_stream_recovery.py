"""Exactly-once across ``kill -9`` + restart, and across a two-worker rebalance."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from stream_processor.sinks import FEATURES_KEY
from tests.integration.stream_support import (
    all_predicted,
    checkpointed,
    expected_by_device,
    generated_recording,
    history,
    interleaved,
    make_run,
    n_predicted,
    register_tiny,
    send,
    start_worker,
    stop_worker,
    wait_for,
)
from wearmon.settings import Settings
from wearmon.signals.types import Recording
from wearmon.stack import free_port

pytestmark = pytest.mark.integration

N_DEVICES = 8
#: {device: {window_start_ms: label}} (each device has its own window phase)
Expected = dict[str, dict[int, str]]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return generated_recording(tmp_path_factory.mktemp("rec"), subject=5, seed=2, exercises=3)


def _feature_entries(redis_client, devices: set[str]) -> Counter[tuple[str, int]]:
    """How often each (device, window start) of ``devices`` is in ``feat:live``: its entries
    have ids of their own (``*``), so a window written twice would show there twice (the
    history stream cannot: its entry id is the window start)."""
    seen: Counter[tuple[str, int]] = Counter()
    for _, raw in redis_client.xrange(FEATURES_KEY):
        f = {k.decode(): v.decode() for k, v in raw.items() if k in (b"device", b"window_start_ms")}
        if f.get("device") in devices:
            seen[(f["device"], int(f["window_start_ms"]))] += 1
    return seen


def _check_exactly_once(redis_client, expected: Expected) -> None:
    twice = {k: n for k, n in _feature_entries(redis_client, set(expected)).items() if n > 1}
    assert not twice, f"{len(twice)} windows written more than once, e.g. {next(iter(twice))}"
    for d, exp in expected.items():
        rows = history(redis_client, d)
        got = {int(r["window_start_ms"]): r["label"] for r in rows}
        missing = sorted(set(exp) - set(got))
        assert not missing, f"{d}: {len(missing)} windows missing, first {missing[:3]}"
        assert {s: got[s] for s in exp} == exp, f"{d}: labels differ"


def _messages_in(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("wearmon_stream_messages_in_total"):
            return float(line.split()[-1])
    return 0.0


def test_kill_9_and_restart_loses_and_duplicates_nothing(
    stack: Settings, redis_client, subprocess_env, recording: Recording, tmp_path: Path
) -> None:
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"crash-{run.run}-{i}" for i in range(N_DEVICES)]
    expected = expected_by_device(recording, run.settings, devices)
    msgs = interleaved(recording, devices)
    log = tmp_path / "worker.log"
    worker = start_worker(run.env, log)
    head = len(msgs) // 6
    sender = threading.Thread(target=send, args=(run.settings, msgs[head:]), kwargs={"pace_s": 0.1})
    try:

        def started() -> bool:
            return n_predicted(redis_client, devices) > N_DEVICES * 3

        send(run.settings, msgs[:head])
        wait_for(started, 120, [worker], log, "first predictions")
        sender.start()
        time.sleep(2.5)
        stop_worker(worker, hard=True)  # kill -9 mid-replay
        before = n_predicted(redis_client, devices)
        assert before < sum(map(len, expected.values())), "the replay ended before the kill"
        worker = start_worker(run.env, log)
        sender.join(120)
        wait_for(
            lambda: all_predicted(redis_client, expected),
            120,
            [worker],
            log,
            "all predictions after restart",
        )
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log, "the checkpoints")
    finally:
        stop_worker(worker)
        sender.join(5)
    _check_exactly_once(redis_client, expected)


def test_two_workers_in_one_group_split_partitions_exactly_once(
    stack: Settings, redis_client, subprocess_env, recording: Recording, tmp_path: Path
) -> None:
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"pair-{run.run}-{i}" for i in range(N_DEVICES)]
    expected = expected_by_device(recording, run.settings, devices)
    msgs = interleaved(recording, devices)
    ports = [free_port(), free_port()]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_worker(run.env, logs[0], ports[0])]
    head = len(msgs) // 6
    sender = threading.Thread(
        target=send, args=(run.settings, msgs[head:]), kwargs={"pace_s": 0.15}
    )
    try:
        send(run.settings, msgs[:head])
        wait_for(
            lambda: n_predicted(redis_client, devices) > N_DEVICES,
            120,
            workers,
            logs[0],
            "first predictions",
        )
        sender.start()
        workers.append(start_worker(run.env, logs[1], ports[1]))  # rebalance mid-stream
        sender.join(180)
        wait_for(
            lambda: all_predicted(redis_client, expected),
            120,
            workers,
            logs[1],
            "all predictions with two workers",
        )
        wait_for(lambda: checkpointed(redis_client, run), 60, workers, logs[1], "the checkpoints")
        counts = [_messages_in(p) for p in ports]
    finally:
        for w in workers:
            stop_worker(w)
        sender.join(5)
    assert all(c > 0 for c in counts), f"one worker got no partition: {counts}"
    _check_exactly_once(redis_client, expected)
