from __future__ import annotations

import pytest

from wearmon.settings import Settings


def test_local_addresses_follow_the_stack_ports() -> None:
    s = Settings(ports={"kafka": 1111, "redis": 2222})
    assert s.kafka.bootstrap_servers == "127.0.0.1:1111"
    assert s.redis.url == "redis://127.0.0.1:2222/0"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEARMON_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("WEARMON_REDIS__PASSWORD", "s3cret")
    monkeypatch.setenv("WEARMON_STREAM__BATCH_MAX", "96")
    s = Settings()
    assert s.kafka.bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert s.kafka.faust_broker_url() == "kafka://broker-a:9092;kafka://broker-b:9092"
    assert s.stream.batch_max == 96  # not the default (64)
    assert s.redis.client_kwargs()["password"] == "s3cret"
    # Secrets never show in the repr (which is what logs would print).
    assert "s3cret" not in repr(s)


def test_sasl_settings_reach_the_kafka_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEARMON_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("WEARMON_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("WEARMON_KAFKA__SASL_USERNAME", "wm")
    monkeypatch.setenv("WEARMON_KAFKA__SASL_PASSWORD", "pw")
    conf = Settings().kafka.confluent_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == "pw"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        s.data_dir = "x"  # type: ignore[misc]


def test_invalid_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEARMON_STREAM__BATCH_MAX", "0")
    with pytest.raises(Exception, match="batch_max"):
        Settings()
