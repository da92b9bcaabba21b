"""The Faust app gets the same Kafka security settings as the confluent-kafka clients
(no SASL broker needed: the mapping is checked down to aiokafka's client arguments)."""

from __future__ import annotations

import ssl

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream_processor.app import build_app, faust_credentials
from tests.unit.stream_processor.fakes import FakeManager, FakeModel, FakeProducer, FakeSink
from wearmon.settings import KafkaSettings, Settings


@pytest.fixture(scope="module")
def cafile() -> str:
    certifi = pytest.importorskip("certifi")
    return str(certifi.where())


def test_plaintext_has_no_credentials() -> None:
    assert faust_credentials(KafkaSettings()) is None
    assert credentials_to_aiokafka_auth(None)["security_protocol"] == "PLAINTEXT"


def test_ssl_uses_the_ca_file(cafile: str) -> None:
    creds = faust_credentials(KafkaSettings(security_protocol="SSL", ssl_cafile=cafile))
    assert isinstance(creds, faust.SSLCredentials)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SSL"
    ctx = auth["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] > 0  # the CA file was loaded


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512", None])
def test_sasl_plaintext(mechanism: str | None) -> None:
    k = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username="svc",
        sasl_password="s3cret",
    )
    auth = credentials_to_aiokafka_auth(faust_credentials(k))
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == (mechanism or "PLAIN").upper()
    assert auth["sasl_plain_username"] == "svc"
    assert auth["sasl_plain_password"] == "s3cret"
    assert auth["ssl_context"] is None
    assert "s3cret" not in repr(faust_credentials(k))


def test_sasl_ssl(cafile: str) -> None:
    k = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="pw",
        ssl_cafile=cafile,
    )
    auth = credentials_to_aiokafka_auth(faust_credentials(k))
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_gssapi() -> None:
    k = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="GSSAPI")
    auth = credentials_to_aiokafka_auth(faust_credentials(k))
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_PLAINTEXT", "GSSAPI")


def test_build_app_passes_the_credentials_to_faust() -> None:
    settings = Settings(
        kafka={
            "bootstrap_servers": "broker:9093",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "svc",
            "sasl_password": "pw",
        }
    )
    w = build_app(
        settings, models=FakeManager(FakeModel()), sink=FakeSink(), producer=FakeProducer()
    )
    creds = w.app.conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("svc", "pw", "SCRAM-SHA-256")
    plain = build_app(
        Settings(kafka={"bootstrap_servers": "broker:9092"}),
        models=FakeManager(FakeModel()),
        sink=FakeSink(),
        producer=FakeProducer(),
    )
    assert plain.app.conf.broker_credentials is None


def test_worker_consumer_gets_the_short_fetch_wait() -> None:
    """The aiokafka consumer Faust creates holds fetches at most kafka.consumer_fetch_max_wait_ms
    (Faust's own 1,500 ms stalled sample fetches behind idle label partitions)."""
    import asyncio

    def wait_of(settings: Settings) -> int:
        w = build_app(
            settings, models=FakeManager(FakeModel()), sink=FakeSink(), producer=FakeProducer()
        )

        async def create() -> int:
            thread = w.app.consumer._thread  # type: ignore[attr-defined]
            return int(thread._create_worker_consumer(w.app.transport)._fetch_max_wait_ms)

        return asyncio.run(create())

    assert wait_of(Settings(kafka={"bootstrap_servers": "broker:9092"})) == 100
    assert (
        wait_of(
            Settings(kafka={"bootstrap_servers": "broker:9092", "consumer_fetch_max_wait_ms": 40})
        )
        == 40
    )


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class _Consumer:
    def __init__(self, highwater: dict[int, int | None]) -> None:
        self.hw = highwater

    def assignment(self) -> set[_TP]:
        return {_TP("wearmon.samples", p) for p in self.hw} | {_TP("wearmon.labels", 0)}

    def highwater(self, tp: _TP) -> int | None:
        return self.hw[tp.partition] if tp.topic == "wearmon.samples" else 99


def test_consumer_lag_gauge() -> None:
    from stream_processor.app import update_lag
    from stream_processor.metrics import StreamMetrics
    from stream_processor.processor import Processor

    metrics = StreamMetrics()
    proc = Processor(
        Settings(),
        sink=FakeSink(),
        producer=FakeProducer(),
        model_manager=FakeManager(FakeModel()),
        metrics=metrics,
    )
    proc.restore(0, 41, {})  # resumes after offset 41
    proc.restore(1, None, {})
    proc.partitions[1].offset = 9  # handled up to offset 9
    # partition 2: assigned but not started (no message yet): no gauge; 3: high water unknown
    proc.restore(3, None, {})
    update_lag(_Consumer({0: 50, 1: 10, 2: 7, 3: None}), proc, metrics, "wearmon.samples")

    def lag(p: str) -> float | None:
        return metrics.registry.get_sample_value("wearmon_stream_consumer_lag", {"partition": p})

    assert (lag("0"), lag("1"), lag("2"), lag("3")) == (8.0, 0.0, None, None)


def test_faust_keeps_its_folder_under_the_data_dir(tmp_path) -> None:
    """Faust's datadir defaults to "<app id>-data" in the working directory: every test worker
    left one in the checkout."""
    settings = Settings(
        data_dir=tmp_path / "d{x}",
        stream={"app_id": "wm-{odd}"},
        kafka={"bootstrap_servers": "broker:9092"},
    )
    w = build_app(
        settings, models=FakeManager(FakeModel()), sink=FakeSink(), producer=FakeProducer()
    )
    assert w.app.conf.datadir == (tmp_path / "d{x}" / "faust" / "wm-{odd}").resolve()
