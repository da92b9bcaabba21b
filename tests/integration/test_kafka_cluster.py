"""wearmon on a real 3-broker KRaft cluster on loopback (replication factor 3,
``min.insync.replicas`` 2) and a Redis Cluster of 3 primaries: the replay (``wearmon
replay``) and two workers (``wearmon process``) run against them with nothing but settings
changed, and one broker killed (-9) mid-replay, then one Redis primary killed (-9) and
started again a few seconds later under the running workers, lose no window and write none
twice.

The clusters are this module's own (a stack of 3 Kafka nodes and 3 Redis primaries on free
ports, started once for the module), not the session's single-node stack. It runs in
``make test`` (64-80 s on a quiet machine, docs/deploy.md) and alone with ``make cluster``
(``pytest -m cluster``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.kafka_sink import ensure_topics
from stream_processor.sinks import history_key
from tests.chaos.support import report
from tests.integration.cluster_support import (
    REDIS_SHARDS,
    port_base,
    redis_cluster_ports,
    redis_primary_pid,
)
from tests.integration.stream_support import (
    expected_windows,
    register_tiny,
    start_worker,
    stop_worker,
    wait_for,
)
from tests.integration.test_stream_recovery import _check_exactly_once
from wearmon.errors import ConfigError
from wearmon.settings import Settings, redis_errors
from wearmon.signals.types import Recording
from wearmon.stack import LocalStack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

BROKERS = 3
N_DEVICES = 6
#: the replay's speed: the 148 s recording in about 15 s
SPEED = 10
STEP = 10
#: how long the killed Redis primary stays down before the stack starts it again
REDIS_DOWN_S = 3.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running 3-node Kafka cluster and Redis Cluster for this module; yields their settings."""
    base = port_base(BROKERS, STEP, (0, 1))  # each node: its client and controller ports
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("cluster-data"),
        ports={"kafka": base, "kafka_controller": base + 1, "kafka_step": STEP,
               **redis_cluster_ports(), "prometheus": free_port()},
        stack={"kafka_brokers": BROKERS, "redis_shards": REDIS_SHARDS},
        metrics={"stream_port": free_port(), "replay_port": free_port(),
                 "monitor_port": free_port()},
    )  # fmt: skip
    local = LocalStack(settings)
    t0 = time.monotonic()
    local.up(timeout=120, services=["kafka", "redis"])
    print(
        f"CLUSTER up: {BROKERS} Kafka nodes and {REDIS_SHARDS} Redis primaries ready in "
        f"{time.monotonic() - t0:.1f} s"
    )
    try:
        yield settings
    finally:
        local.down()


def _env(settings: Settings, repo_root: Path) -> dict[str, str]:
    """The environment of a wearmon command against the cluster: settings only."""
    p, m = settings.ports, settings.metrics
    env = dict(os.environ)
    env.update(
        WEARMON_DATA_DIR=str(settings.data_dir),
        WEARMON_STACK__KAFKA_BROKERS=str(BROKERS),
        WEARMON_PORTS__KAFKA=str(p.kafka),
        WEARMON_PORTS__KAFKA_CONTROLLER=str(p.kafka_controller),
        WEARMON_PORTS__KAFKA_STEP=str(p.kafka_step),
        WEARMON_PORTS__REDIS=str(p.redis),
        WEARMON_PORTS__REDIS_STEP=str(p.redis_step),
        WEARMON_STACK__REDIS_SHARDS=str(REDIS_SHARDS),
        WEARMON_PORTS__PROMETHEUS=str(p.prometheus),
        WEARMON_METRICS__STREAM_PORT=str(m.stream_port),
        WEARMON_METRICS__REPLAY_PORT=str(m.replay_port),
        WEARMON_METRICS__MONITOR_PORT=str(m.monitor_port),
        WEARMON_STREAM__MODEL_POLL_S="1.0",
        WEARMON_STREAM__CHECKPOINT_S="0.5",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(repo_root),
    )
    return env


def _admin(settings: Settings) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})


def _replication(settings: Settings, topics: list[str]) -> dict[str, tuple[int, int, str]]:
    """{topic: (fewest replicas of a partition, fewest in-sync, min.insync.replicas)}."""
    from confluent_kafka.admin import ConfigResource

    admin = _admin(settings)
    md = admin.list_topics(timeout=10)
    missing = [t for t in topics if t not in md.topics]
    assert not missing, f"topics not created: {missing}"
    configs = admin.describe_configs([ConfigResource("topic", t) for t in topics])
    out = {}
    for res, fut in configs.items():
        parts = md.topics[res.name].partitions.values()
        out[res.name] = (
            min(len(p.replicas) for p in parts),
            min(len(p.isrs) for p in parts),
            fut.result(timeout=10)["min.insync.replicas"].value,
        )
    return out


def _coordinator_node(settings: Settings) -> int:
    """The broker leading the consumer offsets (one partition): the group coordinator."""
    md = _admin(settings).list_topics("__consumer_offsets", timeout=10)
    return int(md.topics["__consumer_offsets"].partitions[0].leader)


def _node_pid(settings: Settings, node: int) -> int:
    st = next(s for s in LocalStack(settings).status() if s.name == f"kafka-{node}")
    assert st.pid is not None and st.running, f"kafka-{node} is not running"
    return st.pid


def _assigned(log: Path) -> str | None:
    """The samples partitions a worker was last assigned ("[0, 1]"), None before any."""
    lines = [ln for ln in log.read_text().splitlines() if "partitions assigned: " in ln]
    return lines[-1].split("partitions assigned: ", 1)[1].strip() if lines else None


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_replay_and_two_workers_survive_a_broker_then_a_redis_primary_killed_mid_run(
    cluster: Settings, repo_root: Path, tmp_path: Path
) -> None:

    from producers.devices import device_ids
    from wearmon.signals.readers import read_garmin_pair
    from wearmon.signals.recording_gen import make_recording

    t_start = time.monotonic()
    settings, env = cluster, _env(cluster, repo_root)
    k = settings.kafka
    assert k.bootstrap_servers.count(",") == BROKERS - 1, k.bootstrap_servers
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    ports = [free_port(), free_port()]
    # the workers start (and create the topics) while the model is registered: they wait for
    # it. The registry's store is created first: processes creating one SQLite store at once
    # race in MLflow's migrations ("table _alembic_tmp_tags already exists")
    from trainer.registry import alias_version

    assert alias_version(settings) is None
    workers = [start_worker(env, log, port) for log, port in zip(logs, ports, strict=True)]
    replay: subprocess.Popen[bytes] | None = None
    paths = make_recording(tmp_path / "rec", subject=5, seed=2, max_exercises=3)
    recording: Recording = read_garmin_pair(paths[0], paths[1])
    register_tiny(settings, tmp_path, seed=21)
    devices = device_ids(N_DEVICES, seed=7)
    expected = {d: expected_windows(recording, settings, d) for d in devices}
    total = sum(map(len, expected.values()))
    assert settings.redis.cluster
    client = settings.redis.connect()

    seen = [0] * N_DEVICES

    def counts() -> list[int]:
        """Windows per device in Redis; the last ones read while a primary is down."""
        for i, d in enumerate(devices):
            try:
                seen[i] = int(client.xlen(history_key(d)))
            except redis_errors():
                pass
        return list(seen)

    def done() -> bool:
        return all(n >= len(expected[d]) for d, n in zip(devices, counts(), strict=True))

    try:
        for log in logs:  # the replay starts once both serve the model, each its partitions
            wait_for(
                lambda log=log: _assigned(log) not in (None, "[]")
                and "now serving model version" in log.read_text(),
                180, workers, log, "both workers in the group with partitions and the model",
            )  # fmt: skip
        # every wearmon topic, Faust's internal one and the consumer offsets: 3 replicas, 2 in sync
        leader = f"{settings.stream.app_id}-__assignor-__leader"
        topics = [k.samples_topic, k.labels_topic, k.predictions_topic, k.episodes_topic,
                  k.deadletter_topic, leader, "__consumer_offsets"]  # fmt: skip
        replication = _replication(settings, topics)
        assert replication == {t: (3, 3, "2") for t in topics}, replication

        replay_log = tmp_path / "replay.log"
        t_replay = time.monotonic()
        with open(replay_log, "wb") as out:
            replay = subprocess.Popen(
                [sys.executable, "-m", "wearmon.cli.main", "replay", str(paths[0]),
                 "--speed", str(SPEED), "--devices", str(N_DEVICES), "--seed", "7",
                 "--timestamps", "original", "--stagger", "0", "--no-labels",
                 "--no-metrics", "--no-progress"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(lambda: sum(counts()) > total // 4, 120, workers, logs[0], "a quarter predicted")
        victim = _coordinator_node(settings)
        os.kill(_node_pid(settings, victim), signal.SIGKILL)
        t_kill = time.monotonic()
        at_kill = counts()
        assert sum(at_kill) < total, "the replay ended before the broker was killed"
        # per device, the longest time without a new window in Redis after the kill
        last = [(n, t_kill) for n in at_kill]
        stall = [0.0] * N_DEVICES
        # then one Redis primary (no replica: its slots are down) killed once half the
        # windows are in, started again REDIS_DOWN_S later, while the workers keep running
        homes = [int(client.get_node_from_key(history_key(d)).port) for d in devices]
        redis_victim = max(set(homes), key=homes.count)
        t_redis_kill = t_redis_up = at_redis_kill = None
        while not done() and time.monotonic() - t_kill < 180:
            for w, log in zip(workers, logs, strict=True):
                assert w.poll() is None, f"a worker exited:\n{log.read_text()[-3000:]}"
            now = time.monotonic()
            n_now = counts()
            for i, (n, d) in enumerate(zip(n_now, devices, strict=True)):
                if n > last[i][0] or n >= len(expected[d]):
                    if t_redis_kill is None:
                        stall[i] = max(stall[i], now - last[i][1])
                    last[i] = (n, now)
            if t_redis_kill is None and sum(n_now) > total // 2:
                at_redis_kill = sum(n_now)
                os.kill(redis_primary_pid(settings, redis_victim), signal.SIGKILL)
                t_redis_kill = time.monotonic()
            elif t_redis_up is None and t_redis_kill and now - t_redis_kill > REDIS_DOWN_S:
                LocalStack(settings).up(timeout=60, services=["redis"])
                t_redis_up = time.monotonic()
            time.sleep(0.2)
        assert t_redis_up is not None, "the windows were in before a Redis primary was killed"
        assert replay.wait(120) == 0, replay_log.read_text()[-3000:]
        replay_s = time.monotonic() - t_replay
        wait_for(done, 120, workers, logs[0], "every window after the broker's death")
        time.sleep(2.0)
        status = _cli(env, "stack", "status")
    finally:
        if replay is not None and replay.poll() is None:
            replay.kill()
        for w in workers:
            stop_worker(w)
    # the broker is gone for good, and the stack's status says so
    assert status.returncode == 1, status.stdout
    down = [line for line in status.stdout.splitlines() if f"kafka-{victim} " in line]
    assert down and "down" in down[0], status.stdout
    assert len(_admin(settings).list_topics(timeout=10).brokers) == BROKERS - 1
    # with a broker down, the existing topics pass the worker's check; a new one is refused
    assert ensure_topics(k, [k.samples_topic, leader], timeout_s=10) == []
    with pytest.raises(ConfigError) as refused:
        ensure_topics(k, ["wearmon.cluster-new"], timeout_s=10)
    assert str(refused.value) == (
        "replication factor 3 needs 3 Kafka brokers, 2 are up "
        "(set WEARMON_KAFKA__REPLICATION_FACTOR)"
    )
    assert at_redis_kill is not None and at_redis_kill < total
    # the workers saw the primary's outage as a failure to retry, not one to isolate
    texts = [log.read_text() for log in logs]
    retried = [
        ln for t in texts for ln in t.splitlines()
        if "batch failed (attempt" in ln and f":{redis_victim}" in ln
    ]  # fmt: skip
    assert retried, "no worker's batch met the Redis primary's outage"
    assert not any("isolating it" in t for t in texts), "a batch was isolated"
    print(
        f"CLUSTER redis-primary-kill-9: 127.0.0.1:{redis_victim} (home of "
        f"{homes.count(redis_victim)} of {N_DEVICES} devices) killed at {at_redis_kill}/"
        f"{total} windows, started again {t_redis_up - t_redis_kill:.1f} s later; "
        f"{len(retried)} batch attempts failed on it and were retried"
    )
    print(
        f"CLUSTER broker-kill-9: kafka-{victim} (the group coordinator) killed at "
        f"{sum(at_kill)}/{total} windows; longest stall of a device after it (before the "
        f"Redis kill) "
        f"{max(stall):.1f} s (median device {sorted(stall)[N_DEVICES // 2]:.1f} s); replay of "
        f"{N_DEVICES} devices x {SPEED} real time {replay_s:.1f} s; test "
        f"{time.monotonic() - t_start:.1f} s"
    )
    report("cluster-broker-kill-9", client, settings, expected)
    _check_exactly_once(client, expected)
    # the devices' keys are spread over the Redis Cluster's primaries (and so are the
    # partitions' checkpoints, by their topic id: printed, not asserted), the features in
    # one slot
    by_node = {
        f"{n.host}:{n.port}": int(client.dbsize(target_nodes=n)) for n in client.get_primaries()
    }
    homes = {str(client.get_node_from_key(history_key(d)).port) for d in devices}
    print(f"CLUSTER redis keys per primary {by_node}; the devices on {len(homes)} primaries")
    assert len(by_node) == REDIS_SHARDS and len(homes) > 1, (by_node, homes)
    client.close()
