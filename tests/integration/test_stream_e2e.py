"""End to end: a labelled recording through real Kafka, a real worker and real Redis gives
exactly one prediction per window, with the label of the batch path for the same model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream_processor.sinks import FEATURES_KEY, history_key, latest_key
from tests.integration.stream_support import (
    all_predicted,
    checkpointed,
    expected_by_device,
    generated_recording,
    history,
    make_run,
    messages_of,
    register_tiny,
    running_worker,
    send,
    wait_for,
)
from wearmon.schemas import SampleBatch, decode_deadletter, encode
from wearmon.settings import Settings
from wearmon.signals.types import Recording

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return generated_recording(tmp_path_factory.mktemp("rec"), subject=3, seed=1, exercises=3)


def _bad_messages(device: str) -> list[tuple[str, bytes]]:
    good = SampleBatch(
        device=device, sensor="accel", t_ms=[1742802739002], x=[0.0], y=[0.0], z=[9.8], unit="m/s2"
    )
    wrong_version = encode(
        SampleBatch(**{**{f: getattr(good, f) for f in good.__struct_fields__}, "v": 99})
    )
    impossible = encode(
        SampleBatch(**{**{f: getattr(good, f) for f in good.__struct_fields__}, "x": [1e6]})
    )
    return [(device, b"\x00not json"), (device, wrong_version), (device, impossible)]


def _dead_letters(settings: Settings, n: int, timeout: float = 30) -> list[str]:
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"dl-reader-{time.time()}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([settings.kafka.deadletter_topic])
    reasons: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while len(reasons) < n and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error():
                reasons.append(decode_deadletter(m.value()).reason)
    finally:
        c.close()
    return reasons


def test_replay_gives_one_prediction_per_window_matching_batch_path(
    stack: Settings, redis_client, subprocess_env, recording: Recording, tmp_path: Path
) -> None:
    run = make_run(stack, subprocess_env)
    version = register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"e2e-{run.run}-{i}" for i in range(3)]
    expected = expected_by_device(recording, run.settings, devices)
    assert all(len(e) > 20 for e in expected.values())
    log = tmp_path / "worker.log"
    with running_worker(run.env, log) as worker:
        msgs = [m for d in devices for m in messages_of(recording, d)]
        send(run.settings, msgs, extra=_bad_messages(devices[0]))
        wait_for(lambda: all_predicted(redis_client, expected), 120, [worker], log,
                 "all predictions")  # fmt: skip
        # everything it will write for these messages is written once this holds
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log, "the checkpoints")
        reasons = _dead_letters(run.settings, 3)
    for d in devices:
        rows = history(redis_client, d)
        starts = [int(r["window_start_ms"]) for r in rows]
        assert len(starts) == len(set(starts)), "a window was predicted twice"
        got = {int(r["window_start_ms"]): r["label"] for r in rows}
        missing = set(expected[d]) - set(got)
        assert not missing, f"{len(missing)} windows missing"
        assert {s: got[s] for s in expected[d]} == expected[d]
        assert all(r["model_version"] == version for r in rows)
        assert all(r["id"] == f"{r['window_start_ms']}-0" for r in rows)
        latest = redis_client.hgetall(latest_key(d))
        assert int(latest[b"window_start_ms"]) == max(starts)
        assert redis_client.ttl(history_key(d)) > 0
    assert len(reasons) == 3, reasons
    assert any("schema version" in r for r in reasons)
    assert any("impossible" in r for r in reasons)
    assert redis_client.xlen(FEATURES_KEY) >= sum(len(e) for e in expected.values())
