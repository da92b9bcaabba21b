"""Redis loses data or comes back from an older snapshot while Kafka's committed offsets are
ahead: the worker seeks back to its checkpoint and nothing is lost or written twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream_processor.sinks import checkpoint_pattern, history_key, latest_key
from tests.integration.stream_support import (
    Run,
    all_predicted,
    checkpointed,
    expected_by_device,
    generated_recording,
    history,
    interleaved,
    make_run,
    n_predicted,
    register_tiny,
    running_worker,
    send,
    wait_for,
)
from wearmon.settings import Settings
from wearmon.signals.types import Recording

pytestmark = pytest.mark.integration

N_DEVICES = 4


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return generated_recording(tmp_path_factory.mktemp("rec"), subject=4, seed=3, exercises=2)


def _run_keys(redis_client: Any, run: Run, devices: list[str]) -> list[bytes]:
    keys = list(redis_client.scan_iter(match=checkpoint_pattern(f"wm-test-{run.run}")))
    for d in devices:
        keys += [k for k in (history_key(d), latest_key(d)) if redis_client.exists(k)]
    return [k if isinstance(k, bytes) else k.encode() for k in keys]


def _committed(settings: Settings, group: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": group})
    try:
        tps = [TopicPartition(settings.kafka.samples_topic, p) for p in range(4)]
        return sum(max(0, tp.offset) for tp in c.committed(tps, timeout=10))
    finally:
        c.close()


def _checkpoint_seeks(log: Path) -> int:
    return log.read_text().count("seeking back to")


@pytest.mark.parametrize("loss", ["flushed", "older_snapshot"])
def test_worker_seeks_back_to_an_older_checkpoint(
    loss: str,
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
) -> None:
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"loss-{run.run}-{i}" for i in range(N_DEVICES)]
    expected = expected_by_device(recording, run.settings, devices)
    msgs = interleaved(recording, devices)
    thirds = [msgs[: len(msgs) // 3], msgs[len(msgs) // 3 : 2 * len(msgs) // 3]]
    thirds.append(msgs[2 * len(msgs) // 3 :])
    log = tmp_path / "worker.log"

    def predicted() -> int:
        return n_predicted(redis_client, devices)

    def all_checkpointed() -> bool:
        return checkpointed(redis_client, run)

    # stopped gracefully at the end: Kafka's committed offsets reach the last checkpoint
    with running_worker(run.env, log) as worker:
        send(run.settings, thirds[0])
        wait_for(lambda: predicted() > 0, 120, [worker], log, "the first predictions")
        wait_for(all_checkpointed, 60, [worker], log, "a checkpoint of the first third")
        snapshot = {k: redis_client.dump(k) for k in _run_keys(redis_client, run, devices)}
        send(run.settings, thirds[1])
        n = predicted()
        wait_for(lambda: predicted() > n, 60, [worker], log, "predictions of the second third")
        wait_for(all_checkpointed, 60, [worker], log, "a checkpoint of the second third")
    committed = _committed(run.settings, f"wm-test-{run.run}")
    assert committed > len(thirds[0]), "the scenario needs Kafka's commits past the snapshot"
    for k in _run_keys(redis_client, run, devices):
        redis_client.delete(k)
    if loss == "older_snapshot":
        for k, v in snapshot.items():
            redis_client.restore(k, 0, v, replace=True)

    with running_worker(run.env, log) as worker:
        send(run.settings, thirds[2])
        wait_for(lambda: all_predicted(redis_client, expected), 180, [worker], log,
                 "every window after the Redis loss")  # fmt: skip
        wait_for(all_checkpointed, 60, [worker], log, "the checkpoints")
    for d, exp in expected.items():
        starts = [int(r["window_start_ms"]) for r in history(redis_client, d)]
        assert len(starts) == len(set(starts)), f"{d}: a window written twice"
        missing = set(exp) - set(starts)
        assert not missing, f"{d}: {len(missing)} of {len(exp)} windows missing"
    print(
        f"RELIABILITY redis-{loss}: expected {sum(map(len, expected.values()))} "
        f"missing 0 duplicated 0 seeks {_checkpoint_seeks(log)} committed-before {committed}"
    )
    assert _checkpoint_seeks(log) >= 1
