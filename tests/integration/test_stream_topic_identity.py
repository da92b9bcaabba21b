"""A deleted and recreated samples topic is a new topic: its offsets start at 0 again, and
the worker must not skip them because of the old topic's checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.stream_support import (
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
from wearmon.settings import Settings
from wearmon.signals.types import Recording

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return generated_recording(tmp_path_factory.mktemp("rec"), subject=8, seed=7, exercises=1)


def _recreate(settings: Settings, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    admin.delete_topics([topic])[topic].result(timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fut = admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
        try:
            fut[topic].result(timeout=30)
            return
        except Exception as exc:  # deletion still under way: try again
            if "TOPIC_ALREADY_EXISTS" not in str(exc) and "marked for deletion" not in str(exc):
                raise
            time.sleep(1.0)
    raise AssertionError(f"{topic} not recreated within 60 s")


def test_recreated_topic_is_read_from_its_start(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
) -> None:
    run = make_run(stack, subprocess_env)
    register_tiny(run.settings, tmp_path, seed=15)
    first = [f"old-{run.run}-{i}" for i in range(4)]
    second = [f"new-{run.run}-{i}" for i in range(2)]
    log = tmp_path / "worker.log"
    worker = start_worker(run.env, log)
    try:  # the old topic: checkpoints at offsets in the hundreds
        send(run.settings, [m for d in first for m in messages_of(recording, d)])
        wait_for(
            lambda: sum(redis_client.xlen(f"pred:hist:{d}") for d in first) > 40,
            120, [worker], log, "predictions of the old topic",
        )  # fmt: skip
        time.sleep(3.0)
    finally:
        stop_worker(worker)
    assert list(redis_client.scan_iter(match=f"ckpt:wm-test-{run.run}:*@*"))
    _recreate(run.settings, run.settings.kafka.samples_topic)
    expected = {d: expected_windows(recording, run.settings, d) for d in second}
    worker = start_worker(run.env, log)
    try:
        send(run.settings, [m for d in second for m in messages_of(recording, d)])

        def done() -> bool:
            return all(redis_client.xlen(f"pred:hist:{d}") >= len(e) for d, e in expected.items())

        wait_for(done, 180, [worker], log, "every window of the recreated topic")
    finally:
        stop_worker(worker)
    for d, exp in expected.items():
        starts = [int(r["window_start_ms"]) for r in history(redis_client, d)]
        assert len(starts) == len(set(starts))
        assert set(exp) <= set(starts), f"{d}: {len(set(exp) - set(starts))} windows missing"
