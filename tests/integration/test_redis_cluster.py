"""The local stack's Redis Cluster (``stack.redis_shards`` = 3): three primaries that
``redis-cli --cluster create`` joined, checked with the real ``redis-cli -c`` and through
wearmon's cluster-aware clients (``RedisSettings.connect``, ``connect_async``), the champion
channel included. Its own stack (Redis only, free ports, a password): about 3 s."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.integration.cluster_support import REDIS_SHARDS, redis_cluster_ports
from wearmon.settings import Settings
from wearmon.stack import LocalStack, free_port

pytestmark = pytest.mark.integration

SHARDS = REDIS_SHARDS
PASSWORD = 'clu"ster pw'


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("redis-cluster"),
        ports={**redis_cluster_ports(), "prometheus": free_port()},
        stack={"redis_shards": SHARDS},
        redis={"password": PASSWORD},
    )
    local = LocalStack(settings)
    local.up(timeout=60, services=["redis"])
    try:
        yield settings
    finally:
        local.down()


def _cli(settings: Settings, node: int, *args: str) -> str:
    port = settings.ports.redis_nodes(SHARDS)[node][0]
    env = {**os.environ, "REDISCLI_AUTH": PASSWORD}
    out = subprocess.run(
        ["redis-cli", "-c", "-p", str(port), *args],
        env=env, capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_three_primaries_serve_every_slot(redis_cluster: Settings) -> None:
    info = dict(
        line.split(":", 1) for line in _cli(redis_cluster, 1, "cluster", "info").splitlines()
    )
    assert info["cluster_state"] == "ok" and info["cluster_slots_assigned"] == "16384"
    assert info["cluster_known_nodes"] == "3" and info["cluster_size"] == "3"
    st = {s.name: s for s in LocalStack(redis_cluster).status()}
    assert all(st[f"redis-{i}"].ready for i in (1, 2, 3)), st


def test_redis_cli_and_wearmon_clients_see_one_keyspace(redis_cluster: Settings) -> None:
    """Keys written by redis-cli -c through one node are read through the others and by
    the cluster-aware client, which spreads its own keys over every primary."""
    for i in range(20):
        assert _cli(redis_cluster, i % SHARDS, "set", f"cli:{i}", str(i)) == "OK"
    assert _cli(redis_cluster, 2, "get", "cli:7") == "7"
    client = redis_cluster.redis.connect()
    try:
        assert [client.get(f"cli:{i}") for i in range(20)] == [str(i).encode() for i in range(20)]
        for i in range(30):
            client.set(f"lib:{i}", i)
        sizes = [client.dbsize(target_nodes=node) for node in client.get_primaries()]
        assert len(sizes) == SHARDS and all(n > 0 for n in sizes), sizes
        assert _cli(redis_cluster, 0, "get", "lib:29") == "29"
        # keys of one hash tag live on one node: a script may touch them together
        n = client.eval(
            "redis.call('SET', KEYS[1], 1); redis.call('SET', KEYS[2], 2); return 2",
            2, "a:{dev-1}", "b:{dev-1}",
        )  # fmt: skip
        assert n == 2 and _cli(redis_cluster, 1, "get", "b:{dev-1}") == "2"
    finally:
        client.close()


def test_the_champion_channel_reaches_a_worker_through_the_cluster(
    redis_cluster: Settings,
) -> None:
    """A worker's model manager (asyncio cluster client, subscribed on one node) looks the
    champion up at once when the promotion publishes (sync cluster client, maybe through
    another node: PUBLISH reaches every node's subscribers); its poll interval is 60 s."""
    from stream_processor.models import CHAMPION_CHANNEL, ModelManager
    from trainer.promotion import publish_champion

    settings = redis_cluster.model_copy(
        update={"stream": redis_cluster.stream.model_copy(update={"model_poll_s": 60.0})}
    )
    lookups: list[float] = []
    manager = ModelManager(settings, version_fn=lambda: lookups.append(time.monotonic()))

    async def scenario() -> None:
        task = asyncio.create_task(manager.run(settings.redis))
        try:
            deadline = time.monotonic() + 10
            while not lookups:  # published again until the subscription is in place
                assert time.monotonic() < deadline, "no lookup after the publishes"
                assert not task.done(), task.exception()
                assert publish_champion(settings, "42")
                await asyncio.sleep(0.2)
            # the manager subscribed on one primary of the cluster
            client = settings.redis.connect()
            subs = [
                client.pubsub_numsub(CHAMPION_CHANNEL, target_nodes=node)
                for node in client.get_primaries()
            ]
            client.close()
            assert sorted(n for [(_, n)] in subs) == [0, 0, 1], subs
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())


def test_the_sink_writes_a_batch_slot_by_slot_each_window_once(redis_cluster: Settings) -> None:
    """The worker's sink on the cluster: one script call per device slot, then the features
    in the ``{stream}`` slot, then one call per partition's checkpoint (each in its own
    slot, spread over the primaries); a batch written twice (a retry, a replay) adds no
    window, feature row or score twice; a guard still refuses a stale checkpoint, and a
    device that fails leaves the checkpoint unwritten."""
    import numpy as np
    import redis

    from stream_processor.sinks import (
        FEATURES_KEY,
        Checkpoint,
        RedisSink,
        StaleCheckpoint,
        accuracy_totals,
        checkpoint_key,
        history_key,
    )
    from tests.integration.test_stream_sink import _pred

    sink = RedisSink.from_settings(redis_cluster)
    assert sink.cluster
    client = sink.client
    devices = [f"c-dev-{i}" for i in range(8)]
    homes = {client.get_node_from_key(history_key(d)).port for d in devices}
    assert len(homes) == SHARDS, homes  # the devices live on every primary
    key = checkpoint_key("app-c", "t", 0, "tid")
    preds = [_pred(d, start) for start in (1000, 5000) for d in devices]
    feats = np.arange(len(preds) * 3, dtype=np.float64).reshape(-1, 3)
    states = {d: b"s-" + d.encode() for d in devices}
    client.script_flush()  # the first write: the nodes' pipelines fail (NOSCRIPT), then call
    for _ in range(2):  # by call; the second: one pipeline per primary
        out = sink.write(preds, feats, [Checkpoint(key, 0, 41, states)], guards=[(key, -1)])
    assert out.new == [False] * len(preds)  # the second time: every window a duplicate
    assert [client.xlen(history_key(d)) for d in devices] == [2] * len(devices)
    rows = client.xrange(FEATURES_KEY)
    assert len(rows) == len(preds)
    assert sorted((r[b"device"], int(r[b"window_start_ms"])) for _, r in rows) == sorted(
        (p.device.encode(), p.window_start_ms) for p in preds
    )
    assert sink.load_checkpoint("app-c", "t", 0, "tid") == (41, states, False)
    # six partitions' checkpoints and guards in one batch: on more than one primary, each
    # written with its own guard; one stale guard fails the batch, the others are written
    parts = range(1, 7)
    keys = {p: checkpoint_key("app-c", "t", p, "tid") for p in parts}
    assert len({client.get_node_from_key(k).port for k in keys.values()}) > 1
    cps = [Checkpoint(keys[p], p, 100 + p, {f"d{p}": b"x"}) for p in parts]
    sink.write([], None, cps, guards=[(k, -1) for k in keys.values()])
    offsets = [sink.load_checkpoint("app-c", "t", p, "tid")[0] for p in parts]
    assert offsets == [100 + p for p in parts]
    later = [Checkpoint(keys[p], p, 200 + p, {}) for p in parts]
    guards = [(keys[p], 150 if p == 3 else 100 + p) for p in parts]
    with pytest.raises(StaleCheckpoint) as stale:  # partition 3 holds 103, not 150
        sink.write([], None, later, guards=guards)
    assert stale.value.keys == [keys[3]]
    got = [sink.load_checkpoint("app-c", "t", p, "tid")[0] for p in parts]
    assert got == [201, 202, 103, 204, 205, 206], got
    # ground truth for one device scores its two windows once, whatever the repeats
    for _ in range(2):
        sink.write_label(devices[0], 0, 20_000, "REST", 4000)
    assert accuracy_totals(client) == {"1": (2, 2)}
    with pytest.raises(StaleCheckpoint):  # this worker wrote 50; the cluster holds 41
        sink.write([_pred(devices[1], 9000)], None, [Checkpoint(key, 0, 60, {})], [], [(key, 50)])
    assert sink.load_checkpoint("app-c", "t", 0, "tid")[0] == 41
    client.set(history_key("c-poison"), "not a stream")
    with pytest.raises(redis.exceptions.ResponseError):
        sink.write([_pred("c-poison", 1000)], None, [Checkpoint(key, 0, 70, {})])
    assert sink.load_checkpoint("app-c", "t", 0, "tid")[0] == 41
    client.close()
