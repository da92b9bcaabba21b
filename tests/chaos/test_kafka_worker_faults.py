"""Fault injection against the real stack: the broker frozen (SIGSTOP) for 45 s under a
running worker; the worker killed (-9) up to three times during a replay.

Each experiment prints a ``RELIABILITY`` line (docs/reliability.md)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.support import report, service_pid
from tests.integration.stream_support import (
    all_predicted,
    checkpointed,
    expected_by_device,
    generated_recording,
    interleaved,
    make_run,
    n_predicted,
    register_tiny,
    running_worker,
    send,
    start_worker,
    stop_worker,
    wait_for,
)
from wearmon.settings import Settings
from wearmon.signals.types import Recording

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

N_DEVICES = 4


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return generated_recording(tmp_path_factory.mktemp("rec"), subject=7, seed=6, exercises=2)


@pytest.fixture
def kafka_pid(stack: Settings) -> Iterator[int]:
    pid = service_pid(stack, "kafka")
    try:
        yield pid
    finally:
        os.kill(int(pid), signal.SIGCONT)


@pytest.mark.chaos(long=True)
def test_broker_frozen_for_45_s(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
    kafka_pid: int,
) -> None:
    run = make_run(stack, subprocess_env, WEARMON_STREAM__RETRY_MAX_S="4")
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"kstop-{run.run}-{i}" for i in range(N_DEVICES)]
    expected = expected_by_device(recording, run.settings, devices)
    msgs = interleaved(recording, devices)
    log = tmp_path / "worker.log"
    worker = start_worker(run.env, log)
    try:
        send(run.settings, msgs[: len(msgs) // 2])
        wait_for(
            lambda: n_predicted(redis_client, devices) > 20,
            120, [worker], log, "predictions before the freeze",
        )  # fmt: skip
        os.kill(kafka_pid, signal.SIGSTOP)
        time.sleep(45.0)
        os.kill(kafka_pid, signal.SIGCONT)
        send(run.settings, msgs[len(msgs) // 2 :])

        wait_for(lambda: all_predicted(redis_client, expected), 240, [worker], log,
                 "every window after the broker came back")  # fmt: skip
        time.sleep(2.0)
    finally:
        stop_worker(worker)
    report("broker-sigstop-45s", redis_client, run.settings, expected)


@pytest.mark.chaos(long=True)
def test_worker_killed_repeatedly_during_a_replay(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
) -> None:
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"wkill-{run.run}-{i}" for i in range(N_DEVICES)]
    expected = expected_by_device(recording, run.settings, devices)
    msgs = interleaved(recording, devices)
    log = tmp_path / "worker.log"
    sender = threading.Thread(  # about 50 s of sending: 50 messages per 1.5 s
        target=send, args=(run.settings, msgs), kwargs={"pace_s": 1.5}, daemon=True
    )

    def predicted() -> int:
        return n_predicted(redis_client, devices)

    def done() -> bool:
        return all_predicted(redis_client, expected)

    worker = start_worker(run.env, log)
    kills = 0
    try:
        wait_for(lambda: "partitions assigned" in log.read_text(), 120, [worker], log, "start")
        sender.start()
        for _ in range(3):
            n = predicted()
            wait_for(
                lambda n=n: predicted() > n + 5 or done(), 120, [worker], log, "progress",
            )  # fmt: skip
            if done():
                break
            stop_worker(worker, hard=True)
            kills += 1
            worker = start_worker(run.env, log)
        sender.join(120)
        wait_for(done, 240, [worker], log, "every window after the kills")
        time.sleep(2.0)
    finally:
        stop_worker(worker)
    print(f"RELIABILITY worker-kill-9: {kills} kills during the replay")
    assert kills >= 2, "the replay ended before the worker could be killed twice"
    report(f"worker-kill-9-x{kills}", redis_client, run.settings, expected)


@pytest.mark.chaos(long=True)
def test_zombie_worker_paused_past_its_session_wakes_up(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
) -> None:
    """One of two workers is frozen (SIGSTOP) for 25 s, past the group's 10 s session
    timeout: the other takes its partitions; then the zombie wakes up with its old state
    and pending writes. Its checkpoint writes are forward-only, its predictions duplicates."""
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"zomb-{run.run}-{i}" for i in range(N_DEVICES * 2)]
    expected = expected_by_device(recording, run.settings, devices)
    msgs = interleaved(recording, devices)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_worker(run.env, logs[0]), start_worker(run.env, logs[1])]
    sender = threading.Thread(
        target=send, args=(run.settings, msgs), kwargs={"pace_s": 1.0}, daemon=True
    )

    def done() -> bool:
        return all_predicted(redis_client, expected)

    try:
        for log in logs:
            wait_for(
                lambda log=log: "partitions assigned" in log.read_text(),
                120, workers, log, "both workers in the group",
            )  # fmt: skip
        sender.start()
        wait_for(
            lambda: n_predicted(redis_client, devices) > 20,
            120, workers, logs[0], "predictions before the pause",
        )  # fmt: skip
        os.kill(workers[0].pid, signal.SIGSTOP)
        time.sleep(25.0)
        os.kill(workers[0].pid, signal.SIGCONT)
        sender.join(180)
        wait_for(done, 240, workers, logs[1], "every window after the zombie woke up")
        time.sleep(3.0)
    finally:
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGCONT)
            stop_worker(w)
    report("zombie-worker-25s", redis_client, run.settings, expected)


def test_backlog_consumed_at_start(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
) -> None:
    """Minutes of data of 8 devices wait in Kafka before the worker (and its model) start."""
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"backlog-{run.run}-{i}" for i in range(N_DEVICES * 2)]
    expected = expected_by_device(recording, run.settings, devices)
    send(run.settings, interleaved(recording, devices))
    span_s = (int(recording.accel.t_ms[-1]) - int(recording.accel.t_ms[0])) / 1000.0
    log = tmp_path / "worker.log"
    t0 = time.monotonic()
    with running_worker(run.env, log) as worker:
        wait_for(lambda: all_predicted(redis_client, expected), 300, [worker], log,
                 "every window of the backlog")  # fmt: skip
        took = time.monotonic() - t0
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log, "the checkpoints")
    print(
        f"RELIABILITY backlog: {len(devices)} devices x {span_s:.0f} s of data consumed "
        f"{took:.0f} s after the worker started (model load included)"
    )
    report("backlog", redis_client, run.settings, expected)


def test_replay_duplicate_and_reorder_faults(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
) -> None:
    """``wearmon replay``'s transport faults: 10 % of batches sent twice, batches reordered
    up to 3 places (1.5 s, inside the 2 s lateness): the windows of the clean recording."""
    import math

    from producers.config import FaultConfig, ReplayConfig
    from producers.devices import device_ids
    from producers.engine import replay

    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = device_ids(N_DEVICES, seed=0)
    expected = expected_by_device(recording, run.settings, devices)
    faults = FaultConfig(seed=3, duplicate=0.1, reorder=3)
    cfg = ReplayConfig(
        speed=math.inf, devices=N_DEVICES, timestamps="original", send_labels=False,
        faults=faults,
    )  # fmt: skip
    log = tmp_path / "worker.log"
    with running_worker(run.env, log) as worker:
        stats = replay(run.settings, [recording], cfg)
        assert stats.ok
        print(f"RELIABILITY replay-faults: injected {dict(stats.injected)}")
        wait_for(lambda: all_predicted(redis_client, expected), 180, [worker], log,
                 "every window of the faulty replay")  # fmt: skip
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log, "the checkpoints")
    report("replay-duplicate-reorder", redis_client, run.settings, expected)
