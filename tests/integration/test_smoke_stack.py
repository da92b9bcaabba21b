"""Smoke test of the real stack: confluent-kafka -> a real Faust worker with a changelogged
table -> Redis. Proves that the chosen Kafka version works with Faust's internals."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from wearmon.settings import Settings
from wearmon.stack import LocalStack, prometheus_ready

pytestmark = pytest.mark.integration

N_MESSAGES = 500
DEVICES = [f"dev-{i}" for i in range(5)]


def test_stack_services_ready(stack: Settings) -> None:
    statuses = {s.name: s for s in LocalStack(stack).status()}
    assert set(statuses) == {"kafka", "redis", "prometheus"}
    assert all(s.ready for s in statuses.values()), statuses
    assert prometheus_ready(stack.ports.prometheus)


def test_faust_worker_consumes_exactly_once(
    stack: Settings, redis_client, subprocess_env, tmp_path
) -> None:
    run = uuid.uuid4().hex[:8]
    app_id = f"smoke-{run}"
    topic = f"smoke.in.{run}"
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(
        timeout=30
    )
    redis_client.delete("smoke:seen", "smoke:count")

    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers, "acks": "all",
                         "enable.idempotence": True})  # fmt: skip
    for i in range(N_MESSAGES):
        producer.produce(topic, key=DEVICES[i % len(DEVICES)], value=f"{run}-{i}")
    assert producer.flush(30) == 0

    env = dict(subprocess_env)
    env.update(
        SMOKE_APP_ID=app_id,
        SMOKE_BROKER=stack.kafka.faust_broker_url(),
        SMOKE_TOPIC=topic,
        SMOKE_REDIS=stack.redis.url,
        SMOKE_PARTITIONS="2",
        SMOKE_DATADIR=str(tmp_path / "faust"),
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "tests.integration.faust_smoke_app", "worker",
         "-l", "warn"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if redis_client.hlen("smoke:seen") >= N_MESSAGES:
                break
            assert worker.poll() is None, worker.stdout.read().decode()[-3000:]
            time.sleep(0.5)
        time.sleep(1.0)  # anything extra (a duplicate) would arrive now
        seen = redis_client.hgetall("smoke:seen")
        counts = {k.decode(): int(v) for k, v in redis_client.hgetall("smoke:count").items()}
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    assert len(seen) == N_MESSAGES, f"{len(seen)} of {N_MESSAGES} arrived"
    assert {k.decode() for k in seen} == {f"{run}-{i}" for i in range(N_MESSAGES)}
    assert all(int(v) == 1 for v in seen.values()), "a message was processed twice"
    assert sum(counts.values()) == N_MESSAGES
    assert set(counts) == set(DEVICES)

    topics = set(admin.list_topics(timeout=10).topics)
    changelog = f"{app_id}-smoke-counts-changelog"
    assert changelog in topics, sorted(t for t in topics if app_id in t)
