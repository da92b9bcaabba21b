"""Retraining and promotion go on without Redis: a single server or a Redis Cluster that
nobody answers at (a closed loopback port) gives None / False and a logged line, never an
exception (the cluster client fails when it is made, with an error that is not a
``RedisError`` in redis-py: wearmon.settings.redis_errors)."""

from __future__ import annotations

import logging

import pytest

from trainer.promotion import publish_champion
from trainer.retrain import reachable, redis_client
from wearmon.settings import Settings
from wearmon.stack import free_port


@pytest.mark.parametrize("cluster", [False, True])
def test_retrain_and_promotion_without_redis(
    cluster: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(redis={"url": f"redis://127.0.0.1:{free_port()}/0", "cluster": cluster})
    with caplog.at_level(logging.WARNING):
        assert reachable(lambda: redis_client(settings)) is None
        assert publish_champion(settings, "3") is False
    text = caplog.text
    assert "Redis unreachable" in text and "could not publish version 3" in text
    if cluster:
        assert "no node of the Redis Cluster at redis://127.0.0.1:" in text
