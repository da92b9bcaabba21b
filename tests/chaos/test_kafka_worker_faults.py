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

import numpy as np
import pytest

from tests.chaos.support import peak_rss_mb, report, sent_recordings, service_pid
from tests.integration.stream_support import (
    all_predicted,
    checkpointed,
    device_windows,
    expected_by_device,
    generated_recording,
    history,
    interleaved,
    json_probs,
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
#: the stream's probabilities (6 decimals in Redis) against the batch path's
PROB_TOL = 1e-4


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
        peak_mb = peak_rss_mb(worker.pid)
    print(
        f"RELIABILITY backlog: {len(devices)} devices x {span_s:.0f} s of data consumed "
        f"{took:.0f} s after the worker started (model load included); worker peak RSS "
        f"{peak_mb:.0f} MB"
    )
    report("backlog", redis_client, run.settings, expected)


@pytest.mark.chaos(long=True)
def test_backlog_of_minutes_per_device_consumed_at_start(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """12 devices x 5 min 45 s of data (69 device-minutes) wait in Kafka before the worker
    (and its model) start: time to drain, the worker's peak memory, the windows' latency
    (sent to processed: time in the backlog included)."""
    long_rec = generated_recording(tmp_path / "rec", subject=7, seed=6, exercises=7)
    span_s = (int(long_rec.accel.t_ms[-1]) - int(long_rec.accel.t_ms[0])) / 1000.0
    assert span_s >= 300, f"the recording spans {span_s:.0f} s, not 5 minutes"
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"longlog-{run.run}-{i}" for i in range(N_DEVICES * 3)]
    expected = expected_by_device(long_rec, run.settings, devices)
    msgs = interleaved(long_rec, devices)
    t_send = time.monotonic()
    send(run.settings, msgs)
    send_s = time.monotonic() - t_send
    log = tmp_path / "worker.log"
    t0 = time.monotonic()
    with running_worker(run.env, log) as worker:
        wait_for(lambda: "partitions assigned" in log.read_text(), 120, [worker], log, "start")
        started = time.monotonic() - t0
        wait_for(lambda: all_predicted(redis_client, expected), 600, [worker], log,
                 "every window of the backlog")  # fmt: skip
        took = time.monotonic() - t0
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log, "the checkpoints")
        peak_mb = peak_rss_mb(worker.pid)
    lat = np.array(
        [float(r["latency_ms"]) for d in devices for r in history(redis_client, d)
         if r.get("latency_ms")]
    )  # fmt: skip
    n = sum(map(len, expected.values()))
    print(
        f"RELIABILITY backlog-long: {len(devices)} devices x {span_s:.0f} s of data "
        f"({len(msgs)} messages, sent in {send_s:.0f} s) consumed {took:.0f} s after the "
        f"worker started (partitions assigned after {started:.0f} s): "
        f"{n / max(took - started, 1e-9):.0f} windows/s; worker peak RSS {peak_mb:.0f} MB; "
        f"latency sent->processed p50 {np.percentile(lat, 50) / 1000:.1f} s, "
        f"max {lat.max() / 1000:.1f} s"
    )
    report("backlog-long", redis_client, run.settings, expected)


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


@pytest.mark.chaos(long=True)
def test_replay_jitter_fault(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
) -> None:
    """``wearmon replay --jitter 5``: every sample timestamp moved by up to +-5 ms (seeded).
    The expected windows and probabilities are the batch path's of the jittered samples the
    replay sent (its own plan), not of the clean recording's."""
    import math

    from producers.config import FaultConfig, ReplayConfig
    from producers.devices import device_ids
    from producers.engine import replay
    from trainer.serving import load_alias

    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    seed = int(run.run, 16)  # this run's own device ids (Redis keys are per device)
    devices = device_ids(N_DEVICES, seed=seed)
    cfg = ReplayConfig(
        speed=math.inf, devices=N_DEVICES, timestamps="original", send_labels=False,
        device_seed=seed, faults=FaultConfig(seed=5, jitter_ms=5),
    )  # fmt: skip
    sent = sent_recordings([recording], cfg)
    assert sorted(sent) == sorted(devices)
    expected = expected_by_device(sent, run.settings, devices)
    model = load_alias(run.settings)
    probs: dict[str, dict[int, np.ndarray]] = {}  # the batch path's, of the jittered samples
    moved = changed = 0
    for d in devices:
        moved += int((sent[d].accel.t_ms != recording.accel.t_ms).sum())
        a = device_windows(sent[d], run.settings, d)
        b = device_windows(recording, run.settings, d)
        keep_a = np.isin(a.start_ms, list(expected[d]))
        keep_b = np.isin(b.start_ms, list(expected[d]))
        assert keep_a.sum() == keep_b.sum() == len(expected[d])
        pa, pb = model.predict_proba(a.x[keep_a]), model.predict_proba(b.x[keep_b])
        probs[d] = dict(zip(a.start_ms[keep_a].tolist(), pa, strict=True))
        changed += int((np.abs(pa - pb).max(axis=1) > PROB_TOL).sum())
    n = sum(map(len, expected.values()))
    print(
        f"RELIABILITY replay-jitter: {moved} of {len(recording.accel) * N_DEVICES} accel "
        f"timestamps moved; {changed} of {n} expected windows' probabilities differ from the "
        f"clean recording's by more than {PROB_TOL:g}"
    )
    assert changed > 0, "the jitter changed no window: the experiment tests nothing"
    log = tmp_path / "worker.log"
    with running_worker(run.env, log) as worker:
        stats = replay(run.settings, [recording], cfg)
        assert stats.ok
        wait_for(lambda: all_predicted(redis_client, expected), 180, [worker], log,
                 "every window of the jittered replay")  # fmt: skip
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log, "the checkpoints")
    report("replay-jitter", redis_client, run.settings, expected)
    rows = [
        (d, int(r["window_start_ms"]), r)
        for d in devices
        for r in history(redis_client, d)
        if int(r["window_start_ms"]) in expected[d]
    ]
    wrong = [
        (d, s, float(np.abs(np.asarray(json_probs(r)) - probs[d][s]).max()), r["label"])
        for d, s, r in rows
        if np.abs(np.asarray(json_probs(r)) - probs[d][s]).max() > PROB_TOL
        or r["label"] != expected[d][s]
    ]
    print(
        f"RELIABILITY replay-jitter probabilities: {len(rows) - len(wrong)} of {len(rows)} "
        f"within {PROB_TOL:g} of the jittered batch path (and its label)"
    )
    assert not wrong, (
        f"{len(wrong)} windows unlike the batch path (device, start, diff): {wrong[:3]}"
    )
