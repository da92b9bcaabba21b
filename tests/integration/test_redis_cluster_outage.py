"""The local stack's Redis Cluster killed whole (-9, every primary) under the sink, then
started again: what the worker sees is a failure it retries (redis-py raises
``RedisClusterException``, not a ``RedisError``, once no node answers), the clients made
while it is down fail with one line naming the URL, and the batch written again after the
restart lands each window once, the checkpoint with it. Then one primary of three killed:
the batch fails before any checkpoint moves. Its own stack (Redis only, free ports): a few
seconds a test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_processor.processor import is_transient
from stream_processor.sinks import Checkpoint, RedisSink, checkpoint_key, history_key
from tests.integration.cluster_support import (
    REDIS_SHARDS,
    kill_redis_primaries,
    redis_cluster_ports,
)
from tests.integration.test_security_redis import _prediction
from wearmon.settings import Settings, redis_errors
from wearmon.stack import LocalStack, free_port

pytestmark = pytest.mark.integration

PASSWORD = "outage-pw-41d9"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(
        data_dir=tmp_path / "data",
        ports={**redis_cluster_ports(), "prometheus": free_port()},
        stack={"redis_shards": REDIS_SHARDS},
        redis={"password": PASSWORD},
    )
    local = LocalStack(settings)
    local.up(timeout=60, services=["redis"])
    try:
        yield settings
    finally:
        local.down()


def _kill_every_primary(settings: Settings) -> None:
    kill_redis_primaries(settings, [p for p, _ in settings.ports.redis_nodes(REDIS_SHARDS)])


def test_a_cluster_killed_whole_is_retried_and_the_batch_lands_once_after_it(
    cluster: Settings, repo_root: Path
) -> None:
    import msgspec

    sink = RedisSink.from_settings(cluster)
    devices = [f"out-{i}" for i in range(9)]
    assert len({sink.client.get_node_from_key(history_key(d)).port for d in devices}) > 1
    first = [_prediction(d) for d in devices]
    key = checkpoint_key("app-o", "t", 0, "tid")
    sink.write(first, None, [Checkpoint(key, 0, 10, {})])
    time.sleep(1.5)  # the append-only files' fsync (every second)
    _kill_every_primary(cluster)

    second = [msgspec.structs.replace(p, window_start_ms=p.window_start_ms + 2000) for p in first]
    states = {d: b"after" for d in devices}
    t0 = time.monotonic()
    with pytest.raises(redis_errors()) as err:
        sink.write(second, None, [Checkpoint(key, 0, 20, states)])
    assert is_transient(err.value), repr(err.value)  # the worker retries it, drops nothing
    print(f"OUTAGE write failed after {time.monotonic() - t0:.1f} s: {err.value!r}")
    t0 = time.monotonic()

    # a client made while no node answers: one error, a RedisError, the URL without password
    with pytest.raises(redis_errors()) as made:
        cluster.redis.connect()
    assert str(made.value).startswith("no node of the Redis Cluster at redis://127.0.0.1:")
    assert PASSWORD not in str(made.value)
    print(f"OUTAGE connect failed after {time.monotonic() - t0:.1f} s")
    t0 = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARMON_")}
    env.update(
        WEARMON_DATA_DIR=str(cluster.data_dir),
        WEARMON_PORTS__REDIS=str(cluster.ports.redis),
        WEARMON_PORTS__REDIS_STEP=str(cluster.ports.redis_step),
        WEARMON_STACK__REDIS_SHARDS=str(REDIS_SHARDS),
        WEARMON_REDIS__PASSWORD=PASSWORD,
        WEARMON_METRICS__STREAM_PORT="1",
        PYTHONPATH=str(repo_root),
    )
    watch = subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", "watch", "--once"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert watch.returncode == 1, watch.stdout + watch.stderr
    print(f"OUTAGE watch exited after {time.monotonic() - t0:.1f} s: {watch.stderr.strip()}")
    t0 = time.monotonic()
    lines = watch.stderr.strip().splitlines()
    assert len(lines) == 1, watch.stderr
    assert lines[0].startswith("error: cannot read predictions from redis://"), lines[0]
    assert "no node of the Redis Cluster" in lines[0] and "Connection refused" in lines[0]
    assert PASSWORD not in watch.stderr

    # the stack starts the nodes again (their nodes.conf and append-only files); the sink's
    # client finds the cluster, and the batch written again lands each window once
    LocalStack(cluster).up(timeout=60, services=["redis"])
    for _ in range(2):  # the retry, then a replay of the same batch
        sink.write(second, None, [Checkpoint(key, 0, 20, states)])
    print(f"OUTAGE up again and written after {time.monotonic() - t0:.1f} s")
    assert [sink.client.xlen(history_key(d)) for d in devices] == [2] * len(devices)
    assert sink.load_checkpoint("app-o", "t", 0, "tid") == (20, states, False)
    sink.client.close()


def test_one_primary_killed_fails_the_batch_before_its_checkpoint_and_loses_nothing(
    cluster: Settings,
) -> None:
    """A partial outage: one of the three primaries killed (-9, no replica to fail over to).
    The devices on the dead one fail the batch with an error the worker retries, and no
    checkpoint moves (they are written after every device call), so a worker that crashed
    here would read the batch again. The stack starts the node again; the batch written
    again lands each window once."""
    import msgspec

    sink = RedisSink.from_settings(cluster)
    devices = [f"part-{i}" for i in range(12)]
    port_of = {d: sink.client.get_node_from_key(history_key(d)).port for d in devices}
    ports = sorted(set(port_of.values()))
    assert len(ports) == REDIS_SHARDS, port_of
    keys = [checkpoint_key("app-p", "t", p, "tid") for p in range(6)]
    assert len({sink.client.get_node_from_key(k).port for k in keys}) > 1
    first = [_prediction(d) for d in devices]
    sink.write(first, None, [Checkpoint(k, 0, 10, {}) for k in keys])
    time.sleep(1.5)  # the append-only files' fsync (every second)

    victim = ports[0]
    kill_redis_primaries(cluster, [victim])

    second = [msgspec.structs.replace(p, window_start_ms=p.window_start_ms + 2000) for p in first]
    cps = [Checkpoint(k, 0, 20, {d: b"after" for d in devices}) for k in keys]
    guards = [(k, 10) for k in keys]
    t0 = time.monotonic()
    with pytest.raises(redis_errors()) as err:
        sink.write(second, None, cps, guards=guards)
    assert is_transient(err.value), repr(err.value)
    print(f"PARTIAL write failed after {time.monotonic() - t0:.1f} s: {err.value!r}")
    alive = [d for d in devices if port_of[d] != victim]
    assert alive and len(alive) < len(devices)
    # the primaries' pipelines run one after another until one fails: devices on a
    # surviving primary hold this batch's window or not yet, never a window twice
    assert {sink.client.xlen(history_key(d)) for d in alive} <= {1, 2}
    # no checkpoint moved: on the surviving primaries they still say 10
    for k in keys:
        if sink.client.get_node_from_key(k).port != victim:
            assert int(sink.client.hget(k, "__offset__")) == 10, k

    t0 = time.monotonic()
    LocalStack(cluster).up(timeout=60, services=["redis"])
    for _ in range(2):  # the retry, then a replay of the same batch
        sink.write(second, None, cps, guards=guards)
    print(f"PARTIAL node up again and written after {time.monotonic() - t0:.1f} s")
    assert [sink.client.xlen(history_key(d)) for d in devices] == [2] * len(devices)
    for p in range(6):
        assert sink.load_checkpoint("app-p", "t", p, "tid") == (20, cps[0].states, False)
    sink.client.close()
