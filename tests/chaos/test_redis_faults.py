"""Fault injection against the real stack: the session's Redis killed under a running worker
and restarted; Redis frozen (SIGSTOP) while the worker is asked to stop.

Each experiment prints a ``RELIABILITY`` line (docs/reliability.md): windows expected /
written once / missing / duplicated, in Redis and on the predictions topic.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_processor.sinks import checkpoint_pattern, history_key, latest_key
from tests.chaos.support import report, service_pid
from tests.integration.stream_support import (
    all_predicted,
    checkpointed,
    expected_by_device,
    generated_recording,
    interleaved,
    make_run,
    messages_of,
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
from wearmon.stack import LocalStack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

N_DEVICES = 4


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return generated_recording(tmp_path_factory.mktemp("rec"), subject=6, seed=5, exercises=2)


def _redis_pid(stack: Settings) -> int:
    return service_pid(stack, "redis")


@pytest.fixture
def redis_restored(stack: Settings) -> Iterator[None]:
    """Whatever a test does to Redis, it runs (and is not frozen) afterwards."""
    yield
    with_pid = next(s for s in LocalStack(stack).status() if s.name == "redis")
    if with_pid.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(with_pid.pid), signal.SIGCONT)
    LocalStack(stack).up(timeout=60, services=["redis"])


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{")
    ) + sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_redis_killed_and_restarted_under_a_running_worker(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
    redis_restored: None,
) -> None:
    run = make_run(stack, subprocess_env, WEARMON_STREAM__RETRY_MAX_S="4")
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"rkill-{run.run}-{i}" for i in range(N_DEVICES)]
    expected = expected_by_device(recording, run.settings, devices)
    msgs = interleaved(recording, devices)
    log, port = tmp_path / "worker.log", free_port()
    with running_worker(run.env, log, metrics_port=port) as worker:
        send(run.settings, msgs[: len(msgs) // 2])
        wait_for(
            lambda: n_predicted(redis_client, devices) > 20,
            120, [worker], log, "predictions before the kill",
        )  # fmt: skip
        os.kill(_redis_pid(stack), signal.SIGKILL)
        send(run.settings, msgs[len(msgs) // 2 :])
        time.sleep(15.0)  # the worker retries with backoff meanwhile
        failures = _metric(port, "wearmon_stream_batch_failures_total")
        LocalStack(stack).up(timeout=60, services=["redis"])
        redis_client.connection_pool.reset()
        wait_for(lambda: all_predicted(redis_client, expected), 180, [worker], log,
                 "every window after Redis came back")  # fmt: skip
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log, "the checkpoints")
    assert failures >= 1, "no failed batch was counted while Redis was down"
    print(f"RELIABILITY redis-kill: batch failures counted while down: {failures:.0f}")
    report("redis-kill", redis_client, run.settings, expected)


def test_worker_stops_within_30_s_while_redis_is_frozen(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
    redis_restored: None,
) -> None:
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"rstop-{run.run}-{i}" for i in range(2)]
    msgs = [m for d in devices for m in messages_of(recording, d)]
    log = tmp_path / "worker.log"
    worker = start_worker(run.env, log)
    pid = _redis_pid(stack)
    try:
        send(run.settings, msgs[: len(msgs) // 2])
        wait_for(
            lambda: n_predicted(redis_client, devices) > 0,
            120, [worker], log, "the first predictions",
        )  # fmt: skip
        os.kill(pid, signal.SIGSTOP)
        send(run.settings, msgs[len(msgs) // 2 :])
        time.sleep(5.0)  # a batch is now waiting on the frozen Redis
        t0 = time.monotonic()
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not stop within 30 s of SIGINT while Redis was frozen")
        took = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
        stop_worker(worker)
    print(f"RELIABILITY redis-frozen-shutdown: stopped {took:.1f} s after SIGINT")


def test_redis_restored_from_an_older_snapshot_under_a_running_worker(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
) -> None:
    """Redis goes back in time while the worker runs (its keys replaced by a DUMP taken a
    third of the replay earlier): the worker's next write finds an older checkpoint, seeks
    back to it and writes the lost windows again."""
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"rback-{run.run}-{i}" for i in range(N_DEVICES)]
    expected = expected_by_device(recording, run.settings, devices)
    msgs = interleaved(recording, devices)
    third = len(msgs) // 3
    log = tmp_path / "worker.log"

    def keys() -> list[Any]:
        out = list(redis_client.scan_iter(match=checkpoint_pattern(f"wm-test-{run.run}")))
        return out + [k for d in devices for k in (history_key(d), latest_key(d))]

    def predicted() -> int:
        return n_predicted(redis_client, devices)

    def all_checkpointed() -> bool:
        return checkpointed(redis_client, run)

    with running_worker(run.env, log) as worker:
        send(run.settings, msgs[:third])
        wait_for(lambda: predicted() > 0, 120, [worker], log, "the first predictions")
        wait_for(all_checkpointed, 60, [worker], log, "a checkpoint of the first third")
        snapshot = {k: redis_client.dump(k) for k in keys() if redis_client.exists(k)}
        n = predicted()
        send(run.settings, msgs[third : 2 * third])
        wait_for(lambda: predicted() > n + 20, 120, [worker], log, "the second third")
        wait_for(all_checkpointed, 60, [worker], log, "a checkpoint of the second third")
        for k in keys():
            redis_client.delete(k)
        for k, v in snapshot.items():
            redis_client.restore(k, 0, v, replace=True)
        send(run.settings, msgs[2 * third :])
        wait_for(lambda: all_predicted(redis_client, expected), 180, [worker], log,
                 "every window after Redis went back in time")  # fmt: skip
        wait_for(all_checkpointed, 60, [worker], log, "the checkpoints")
    assert "Redis holds older checkpoints" in log.read_text()
    report("redis-older-snapshot-running", redis_client, run.settings, expected)
