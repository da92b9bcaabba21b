"""The Redis sink against the real Redis: device ids cannot collide with the checkpoint's
own fields, predictions and checkpoint land in one atomic step, health keys have TTLs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from stream_processor.sinks import (
    FEATURES_KEY,
    Checkpoint,
    RedisSink,
    checkpoint_key,
    history_key,
    legacy_checkpoint_keys,
)
from wearmon.schemas import Prediction
from wearmon.settings import Settings

pytestmark = pytest.mark.integration


def _sink(client: Any) -> RedisSink:
    return RedisSink(
        client, history_maxlen=100, ttl_s=3600, features_maxlen=100, checkpoint_ttl_s=7200
    )


def _pred(device: str, start: int) -> Prediction:
    return Prediction(
        device=device,
        window_start_ms=start,
        window_end_ms=start + 4000,
        label="REST",
        confidence=0.9,
        probs=[0.9, 0.1],
        model_version="1",
        processed_ms=start + 5000,
    )


def test_device_named_like_the_offset_field_is_safe(redis_client: Any) -> None:
    sink = _sink(redis_client)
    app = f"app-{uuid.uuid4().hex[:6]}"
    key = checkpoint_key(app, "t", 0, "tid")
    states = {"__offset__": b"state-a", "dev-1": b"state-b"}
    sink.write([_pred("__offset__", 1000)], None, [Checkpoint(key, 0, 41, states)])
    sink.write([], None, [Checkpoint(key, 0, 42, {"__offset__": b"state-c"})])
    offset, got, legacy = sink.load_checkpoint(app, "t", 0, "tid")
    assert offset == 42 and not legacy
    assert got == {"__offset__": b"state-c", "dev-1": b"state-b"}
    assert 0 < redis_client.ttl(key) <= 7200


def test_checkpoint_is_not_written_when_its_predictions_fail(redis_client: Any) -> None:
    sink = _sink(redis_client)
    app = f"app-{uuid.uuid4().hex[:6]}"
    key = checkpoint_key(app, "t", 0, "tid")
    poisoned = f"poison-{uuid.uuid4().hex[:6]}"
    redis_client.set(history_key(poisoned), "not a stream")
    with pytest.raises(redis.exceptions.ResponseError):
        sink.write(
            [_pred("fine", 1000), _pred(poisoned, 1000)],
            None,
            [Checkpoint(key, 0, 7, {"fine": b"s"})],
        )
    assert redis_client.exists(key) == 0, "checkpoint written though a prediction failed"


def test_checkpoint_only_moves_forward_and_retires_devices(redis_client: Any) -> None:
    sink = _sink(redis_client)
    app = f"app-{uuid.uuid4().hex[:6]}"
    key = checkpoint_key(app, "t", 1, "tid")
    sink.write([], None, [Checkpoint(key, 1, 10, {"a": b"1", "b": b"2"})])
    sink.write([], None, [Checkpoint(key, 1, 9, {"a": b"old"})])  # a zombie's older one
    sink.write([], None, [Checkpoint(key, 1, 11, {}, retired=("b",))])
    offset, got, _ = sink.load_checkpoint(app, "t", 1, "tid")
    assert (offset, got) == (11, {"a": b"1"})


def test_legacy_checkpoint_is_read_when_no_new_one_exists(redis_client: Any) -> None:
    sink = _sink(redis_client)
    app = f"app-{uuid.uuid4().hex[:6]}"
    redis_client.hset(checkpoint_key(app, "t", 2), mapping={"__offset__": 5, "dev-x": b"s"})
    offset, got, legacy = sink.load_checkpoint(app, "t", 2, "tid")
    assert (offset, got, legacy) == (5, {"dev-x": b"s"}, True)


def test_checkpoints_of_the_earlier_layouts_are_read_newest_first(redis_client: Any) -> None:
    """A worker upgraded from the layouts before the checkpoint's own hash tag (every
    partition in the ``{stream}`` slot; before that no tag) resumes from them; a checkpoint
    in the current layout wins over both, and is where the next one is written."""
    sink = _sink(redis_client)
    app = f"app-{uuid.uuid4().hex[:6]}"
    stream_slot, untagged, _ = legacy_checkpoint_keys(app, "t", 3, "tid")
    assert stream_slot == f"ckpt:{{stream}}:{app}:t@tid:3" and untagged == f"ckpt:{app}:t@tid:3"
    redis_client.hset(untagged, mapping={"__offset__": 4, "d:a": b"u"})
    assert sink.load_checkpoint(app, "t", 3, "tid") == (4, {"a": b"u"}, True)
    redis_client.hset(stream_slot, mapping={"__offset__": 6, "d:a": b"s"})
    assert sink.load_checkpoint(app, "t", 3, "tid") == (6, {"a": b"s"}, True)
    key = checkpoint_key(app, "t", 3, "tid")
    assert key == f"ckpt:{{{app}:t@tid:3}}"
    sink.write([], None, [Checkpoint(key, 3, 9, {"a": b"n"})])
    assert sink.load_checkpoint(app, "t", 3, "tid") == (9, {"a": b"n"}, False)


def test_features_stream_gets_a_ttl(redis_client: Any) -> None:
    import numpy as np

    sink = _sink(redis_client)
    device = f"dev-{uuid.uuid4().hex[:6]}"
    sink.write([_pred(device, 1000)], np.zeros((1, 3)), [])
    assert 0 < redis_client.ttl(FEATURES_KEY) <= 3600


def test_stack_redis_runs_with_noeviction_and_a_memory_limit(stack: Settings) -> None:
    client = redis.Redis.from_url(stack.redis.url)
    try:
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert int(client.config_get("maxmemory")["maxmemory"]) > 0
    finally:
        client.close()


def test_a_guard_refuses_the_whole_batch_when_redis_went_back(redis_client: Any) -> None:
    from stream_processor.sinks import StaleCheckpoint

    sink = _sink(redis_client)
    app = f"app-{uuid.uuid4().hex[:6]}"
    key = checkpoint_key(app, "t", 0, "tid")
    device = f"guard-{uuid.uuid4().hex[:6]}"
    sink.write([], None, [Checkpoint(key, 0, 10, {"a": b"1"})])
    with pytest.raises(StaleCheckpoint) as err:  # this worker wrote 20; Redis has 10
        sink.write([_pred(device, 1000)], None, [Checkpoint(key, 0, 30, {})], guards=[(key, 20)])
    assert err.value.keys == [key]
    assert redis_client.exists(history_key(device)) == 0
    assert sink.load_checkpoint(app, "t", 0, "tid")[0] == 10
    sink.write([_pred(device, 1000)], None, [Checkpoint(key, 0, 30, {})], guards=[(key, 10)])
    assert sink.load_checkpoint(app, "t", 0, "tid")[0] == 30
    missing = checkpoint_key(app, "t", 1, "tid")  # flushed: no checkpoint at all
    with pytest.raises(StaleCheckpoint):
        sink.write([_pred(device, 5000)], None, [], guards=[(missing, 5)])
