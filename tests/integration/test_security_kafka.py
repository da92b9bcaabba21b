"""Kafka over TLS, for real: a KRaft broker whose client listeners are SASL over TLS
(SASL_SSL: PLAIN and SCRAM-SHA-512) and TLS alone (SSL), certificates made in the test,
reached by the admin path (topic creation), the replay producer (``wearmon replay``), Faust's
clients with the credentials wearmon builds, and a whole ``wearmon process`` worker over
SASL_SSL with SCRAM-SHA-512 that also writes to a TLS-only Redis."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_processor.app import ensure_topics, faust_credentials
from stream_processor.episodes import key_device
from stream_processor.sinks import history_key, latest_key
from tests.integration.security_support import (
    SASL_USERS,
    SCRAM,
    SCRAM_PASSWORD,
    Pki,
    make_pki,
    sasl_ssl_kafka,
    secure_kafka_settings,
    ssl_kafka_settings,
    tls_redis,
)
from wearmon.settings import Settings
from wearmon.stack import free_port, kafka_ready

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "kafka-test-redis-pw-3b7"

Broker = tuple[Settings, Path, Settings]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("kpki"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Broker]:
    """(settings of a SASL_SSL client of the broker, the broker's log file, settings of a
    client of its TLS-only listener)."""
    d = tmp_path_factory.mktemp("sasl-broker")
    base = Settings(
        data_dir=d / "data",
        ports={"kafka": free_port(), "kafka_controller": free_port()},
        kafka={"partitions": 2},
    )
    ssl_port = free_port()
    with sasl_ssl_kafka(d, pki, base, ssl_port=ssl_port) as log:
        yield secure_kafka_settings(base, pki), log, ssl_kafka_settings(base, pki, ssl_port)


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[int]:
    with tls_redis(tmp_path_factory.mktemp("kredis"), pki, REDIS_PASSWORD) as port:
        yield port


def _topics(settings: Settings) -> Settings:
    run = uuid.uuid4().hex[:8]
    kafka = settings.kafka.model_copy(
        update={
            "samples_topic": f"s.samples.{run}",
            "predictions_topic": f"s.pred.{run}",
            "labels_topic": f"s.labels.{run}",
            "deadletter_topic": f"s.dl.{run}",
        }
    )
    return settings.model_copy(update={"kafka": kafka})


def _env(settings: Settings, pki: Pki, repo_root: Path, **over: str) -> dict[str, str]:
    k = settings.kafka
    env = {key: v for key, v in os.environ.items() if not key.startswith("WEARMON_")}
    assert k.sasl_username is not None and k.sasl_password is not None
    env.update(
        {
            "WEARMON_DATA_DIR": str(settings.data_dir),
            "WEARMON_PORTS__KAFKA": str(settings.ports.kafka),
            "WEARMON_PORTS__KAFKA_CONTROLLER": str(settings.ports.kafka_controller),
            "WEARMON_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "WEARMON_KAFKA__SASL_MECHANISM": k.sasl_mechanism or "PLAIN",
            "WEARMON_KAFKA__SASL_USERNAME": k.sasl_username,
            "WEARMON_KAFKA__SASL_PASSWORD": k.sasl_password.get_secret_value(),
            "WEARMON_KAFKA__SSL_CAFILE": str(pki.ca),
            "WEARMON_KAFKA__PARTITIONS": str(k.partitions),
            "WEARMON_KAFKA__SAMPLES_TOPIC": k.samples_topic,
            "WEARMON_KAFKA__PREDICTIONS_TOPIC": k.predictions_topic,
            "WEARMON_KAFKA__LABELS_TOPIC": k.labels_topic,
            "WEARMON_KAFKA__DEADLETTER_TOPIC": k.deadletter_topic,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(repo_root),
            "COLUMNS": "200",
        }
    )
    env.update(over)
    return env


def _consume(settings: Settings, topic: str, expect: int) -> list[bytes]:
    """Messages of ``topic`` from the beginning, as a SASL_SSL consumer, until ``expect``
    arrived (or 30 s passed)."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            **settings.kafka.confluent_config(),
            "group.id": f"sec-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and len(out) < expect:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append(bytes(m.value() or b""))
    finally:
        c.close()
    return out


def test_only_tls_clients_get_in(broker: Broker, pki: Pki) -> None:
    settings, log, tls_only = broker
    k = settings.kafka
    t = tls_only.kafka
    assert kafka_ready(t.bootstrap_servers, conf=t.confluent_config())
    assert not kafka_ready(t.bootstrap_servers, timeout=1.5)  # PLAINTEXT is refused there too
    assert kafka_ready(k.bootstrap_servers, conf=k.confluent_config())
    assert not kafka_ready(k.bootstrap_servers, timeout=1.5)  # PLAINTEXT is refused
    wrong = k.model_copy(update={"sasl_password": None}).confluent_config()
    wrong["sasl.password"] = "not-the-password"
    assert not kafka_ready(k.bootstrap_servers, timeout=1.5, conf=wrong)
    other_ca = {**k.confluent_config(), "ssl.ca.location": str(pki.other_ca)}
    assert not kafka_ready(k.bootstrap_servers, timeout=1.5, conf=other_ca)
    scram = secure_kafka_settings(settings, pki, SCRAM).kafka.confluent_config()
    assert kafka_ready(k.bootstrap_servers, conf=scram)
    assert not kafka_ready(k.bootstrap_servers, timeout=1.5, conf={**scram, "sasl.password": "x"})
    # each mechanism has its own password: the SCRAM one does not get in over PLAIN
    plain_scram_pw = {**k.confluent_config(), "sasl.password": SCRAM_PASSWORD}
    assert not kafka_ready(k.bootstrap_servers, timeout=1.5, conf=plain_scram_pw)
    # the broker user has no SCRAM credentials: PLAIN accounts are not SCRAM ones
    broker_user, broker_pw = SASL_USERS[0]
    other = {**scram, "sasl.username": broker_user, "sasl.password": broker_pw}
    assert not kafka_ready(k.bootstrap_servers, timeout=1.5, conf=other)
    assert all(pw not in log.read_text() for pw in (SCRAM_PASSWORD, *(p for _, p in SASL_USERS)))
    props = log.parent / "kafka" / "server.properties"  # holds the accounts: owner only
    assert stat.S_IMODE(props.stat().st_mode) == 0o600


def _client(broker: Broker, protocol: str, pki: Pki | None = None) -> Settings:
    """A client of ``protocol``: SASL_SSL (PLAIN), SSL, or SCRAM (SASL_SSL, SCRAM-SHA-512)."""
    if protocol == "SCRAM":
        assert pki is not None
        return secure_kafka_settings(broker[0], pki, SCRAM)
    return broker[0] if protocol == "SASL_SSL" else broker[2]


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL", "SCRAM"])
def test_ensure_topics_over_tls(broker: Broker, pki: Pki, protocol: str) -> None:
    from confluent_kafka.admin import AdminClient

    settings = _topics(_client(broker, protocol, pki))
    assert settings.kafka.security_protocol == protocol.replace("SCRAM", "SASL_SSL")
    ensure_topics(settings, timeout=20)
    k = settings.kafka
    md = AdminClient(k.confluent_config()).list_topics(timeout=10)
    for topic in (k.samples_topic, k.predictions_topic, k.labels_topic, k.deadletter_topic):
        assert topic in md.topics
    assert len(md.topics[k.samples_topic].partitions) == k.partitions


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL", "SCRAM"])
def test_faust_clients_round_trip_with_wearmon_credentials(
    broker: Broker, pki: Pki, protocol: str
) -> None:
    """aiokafka, configured exactly as Faust configures it from faust_credentials()."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = _topics(_client(broker, protocol, pki))
    k = settings.kafka
    auth = credentials_to_aiokafka_auth(faust_credentials(k))
    assert auth["security_protocol"] == protocol.replace("SCRAM", "SASL_SSL")
    if protocol == "SCRAM":
        assert auth["sasl_mechanism"] == SCRAM
    topic = k.samples_topic

    async def scenario() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap_servers, **auth)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"m{i}".encode(), key=b"dev")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=k.bootstrap_servers,
            group_id=f"faust-sec-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
            **auth,
        )
        await consumer.start()
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < 5 and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                got += [bytes(m.value or b"") for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(scenario()) == [f"m{i}".encode() for i in range(5)]


def test_replay_with_a_wrong_password_is_one_line(
    broker: Broker, pki: Pki, repo_root: Path
) -> None:
    settings = _topics(broker[0])
    env = _env(settings, pki, repo_root, WEARMON_KAFKA__SASL_PASSWORD="wrong-pw-4242")
    proc = subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", "replay", "--seglearn", "--subjects", "1",
         "--speed", "max", "--duration", "5", "--no-metrics", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "SASL authentication error" in lines[0] and "Invalid username or password" in lines[0]
    assert "wrong-pw-4242" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("mechanism", "create_topics"), [("PLAIN", "true"), ("PLAIN", "false"), (SCRAM, "true")]
)
def test_worker_with_a_wrong_password_fails_fast_in_one_line(
    broker: Broker, pki: Pki, repo_root: Path, mechanism: str, create_topics: str
) -> None:
    """``wearmon process`` with a wrong SASL password: one line naming the SASL failure and
    the broker, within seconds (it was ~30 s and "Broker transport failure"), whether or
    not it may create the topics."""
    settings = _topics(secure_kafka_settings(broker[0], pki, mechanism))
    if create_topics == "false":
        ensure_topics(settings, timeout=20)  # the topics exist: only the password is wrong
    env = _env(
        settings, pki, repo_root,
        WEARMON_KAFKA__SASL_PASSWORD="wrong-pw-4242",
        WEARMON_KAFKA__CREATE_TOPICS=create_topics,
        WEARMON_METRICS__STREAM_PORT=str(free_port()),
    )  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", "process"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    took = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "SASL authentication error" in lines[0], lines[0]
    cause = "Invalid username or password" if mechanism == "PLAIN" else "invalid credentials"
    assert cause in lines[0], lines[0]
    assert settings.kafka.bootstrap_servers in lines[0], lines[0]
    assert "wrong-pw-4242" not in proc.stdout + proc.stderr
    print(f"worker with a wrong {mechanism} password (create_topics={create_topics}): exit "
          f"after {took:.1f} s: {lines[0]}")  # fmt: skip
    assert took < 20, f"the worker took {took:.0f} s to give up"


def test_replay_worker_and_watch_over_sasl_ssl_and_tls_redis(
    broker: Broker, pki: Pki, redis_port: int, repo_root: Path, tmp_path: Path
) -> None:
    """The whole path secured: replay -> SASL_SSL Kafka (SCRAM-SHA-512; PLAIN is what the
    tests above use) -> worker -> TLS Redis + predictions topic -> wearmon watch."""
    import redis

    from tests.integration.stream_support import register_tiny, start_worker, stop_worker

    settings = _topics(secure_kafka_settings(broker[0], pki, SCRAM))
    run = uuid.uuid4().hex[:6]
    env = _env(
        settings,
        pki,
        repo_root,
        WEARMON_REDIS__URL=f"redis://127.0.0.1:{redis_port}/0",
        WEARMON_REDIS__TLS="true",
        WEARMON_REDIS__PASSWORD=REDIS_PASSWORD,
        WEARMON_REDIS__TLS_CA_FILE=str(pki.ca),
        WEARMON_REDIS__TLS_CERT_FILE=str(pki.client_cert),
        WEARMON_REDIS__TLS_KEY_FILE=str(pki.client_key),
        WEARMON_METRICS__STREAM_PORT=str(free_port()),
        WEARMON_MODEL_NAME=f"wearmon-sec-{run}",
        WEARMON_STREAM__APP_ID=f"wm-sec-{run}",
        WEARMON_STREAM__MODEL_POLL_S="1.0",
        WEARMON_STREAM__CHECKPOINT_S="0.5",
        # the plain TensorFlow call, not compiled or exported: start-up is what costs here
        WEARMON_STREAM__INFERENCE_BACKEND="tf",
        WEARMON_STREAM__JIT_COMPILE="false",
    )
    register_tiny(
        settings.model_copy(update={"model_name": f"wearmon-sec-{run}"}), tmp_path, seed=3
    )
    client = redis.Redis.from_url(
        f"rediss://127.0.0.1:{redis_port}/0",
        password=REDIS_PASSWORD,
        ssl_ca_certs=str(pki.ca),
        ssl_certfile=str(pki.client_cert),
        ssl_keyfile=str(pki.client_key),
    )
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        replay = subprocess.run(
            [sys.executable, "-m", "wearmon.cli.main", "replay", "--seglearn", "--subjects",
             "1", "--speed", "max", "--duration", "30", "--seed", "7", "--no-metrics",
             "--no-progress"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        # 30 s of samples: 14 windows, the last ones still open when the replay ends
        deadline = time.monotonic() + 120
        device, in_redis = "", 0
        while time.monotonic() < deadline and in_redis < 10:
            assert worker.poll() is None, log.read_text()[-4000:]
            keys = client.keys(latest_key("*"))
            if keys:
                device = key_device(keys[0])
                in_redis = int(client.xlen(history_key(device)))
            time.sleep(0.5)
        assert in_redis >= 10, f"{in_redis} predictions in Redis\n{log.read_text()[-4000:]}"
        on_topic = _consume(settings, settings.kafka.predictions_topic, expect=in_redis)
        watch = subprocess.run(
            [sys.executable, "-m", "wearmon.cli.main", "watch", "--once"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        stop_worker(worker)
        client.close()
    assert len(on_topic) >= in_redis
    assert watch.returncode == 0, watch.stderr
    assert device in watch.stdout
    text = log.read_text()
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == SCRAM_PASSWORD  # only SCRAM works
    for secret in (REDIS_PASSWORD, SCRAM_PASSWORD, *(pw for _, pw in SASL_USERS)):
        assert secret not in text
