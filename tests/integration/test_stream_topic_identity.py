"""A deleted and recreated samples topic is a new topic: its offsets start at 0 again, and
the worker must not skip them because of the old topic's checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from stream_processor.sinks import checkpoint_pattern
from tests.integration.stream_support import (
    all_predicted,
    checkpointed,
    expected_by_device,
    generated_recording,
    history,
    make_run,
    messages_of,
    n_predicted,
    register_tiny,
    running_worker,
    send,
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
    register_tiny(run.settings, tmp_path, seed=1)
    first = [f"old-{run.run}-{i}" for i in range(4)]
    second = [f"new-{run.run}-{i}" for i in range(2)]
    log = tmp_path / "worker.log"
    with running_worker(run.env, log) as worker:  # old topic: checkpoints in the hundreds
        send(run.settings, [m for d in first for m in messages_of(recording, d)])
        wait_for(
            lambda: n_predicted(redis_client, first) > 40,
            120, [worker], log, "predictions of the old topic",
        )  # fmt: skip
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log,
                 "checkpoints at the old topic's ends")  # fmt: skip
    assert list(redis_client.scan_iter(match=checkpoint_pattern(f"wm-test-{run.run}")))
    _recreate(run.settings, run.settings.kafka.samples_topic)
    expected = expected_by_device(recording, run.settings, second)
    with running_worker(run.env, log) as worker:
        send(run.settings, [m for d in second for m in messages_of(recording, d)])
        wait_for(lambda: all_predicted(redis_client, expected), 180, [worker], log,
                 "every window of the recreated topic")  # fmt: skip
    for d, exp in expected.items():
        starts = [int(r["window_start_ms"]) for r in history(redis_client, d)]
        assert len(starts) == len(set(starts))
        assert set(exp) <= set(starts), f"{d}: {len(set(exp) - set(starts))} windows missing"
