"""The Redis TLS settings turn into the client options redis-py accepts (sync and asyncio)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from wearmon.settings import RedisSettings, Settings


def test_tls_flag_means_rediss_and_rediss_means_tls() -> None:
    assert Settings(redis={"tls": True}).redis.url.startswith("rediss://127.0.0.1:")
    r = RedisSettings(url="rediss://db:6380/0")
    assert r.tls and r.url == "rediss://db:6380/0"
    assert RedisSettings(url="redis://db:6379/0").tls is False


def test_tls_with_a_unix_socket_is_refused() -> None:
    with pytest.raises(ValidationError, match="tls needs a redis:// or rediss:// URL"):
        RedisSettings(url="unix:///run/redis.sock", tls=True)


def test_client_kwargs_build_tls_clients_without_connecting(tmp_path: Path) -> None:
    import redis
    import redis.asyncio as aredis
    from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
    from redis.connection import Connection, SSLConnection

    r = RedisSettings(
        url="redis://db:6379/0",
        tls=True,
        password="pw",
        tls_ca_file=tmp_path / "ca.pem",
        tls_cert_file=tmp_path / "c.pem",
        tls_key_file=tmp_path / "c.key",
        tls_key_password="kp",
    )
    kw = r.client_kwargs()
    assert kw["ssl_ca_certs"] == str(tmp_path / "ca.pem")
    assert kw["ssl_password"] == "kp" and kw["ssl_cert_reqs"] == "required"
    sync = r.connect()
    assert type(sync) is redis.Redis
    assert sync.connection_pool.connection_class is SSLConnection
    asy = r.connect_async()
    assert type(asy) is aredis.Redis
    assert asy.connection_pool.connection_class is AsyncSSLConnection
    plain = RedisSettings(url="redis://db:6379/0", password="pw")
    assert not any(k.startswith("ssl") for k in plain.client_kwargs())
    client = plain.connect(socket_timeout=2.5)
    assert client.connection_pool.connection_class is Connection
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 2.5
    assert client.connection_pool.connection_kwargs["password"] == "pw"


def test_sasl_mechanism_defaults_to_plain_for_both_clients() -> None:
    """librdkafka's own default, GSSAPI, is not in the confluent-kafka wheel: an unset
    mechanism failed with a traceback when the admin client was created."""
    from confluent_kafka.admin import AdminClient

    from wearmon.settings import KafkaSettings

    k = KafkaSettings(
        bootstrap_servers="127.0.0.1:1",
        security_protocol="SASL_SSL",
        sasl_username="u",
        sasl_password="p",
    )
    assert k.sasl_mechanism == "PLAIN"
    assert k.confluent_config()["sasl.mechanism"] == "PLAIN"
    AdminClient(k.confluent_config())  # raised KafkaException(_INVALID_ARG) before
    assert KafkaSettings(security_protocol="SSL").sasl_mechanism is None
    assert KafkaSettings(sasl_mechanism="scram-sha-256").sasl_mechanism == "SCRAM-SHA-256"
    with pytest.raises(ValidationError, match="unsupported SASL mechanism"):
        KafkaSettings(sasl_mechanism="OAUTHBEARER")
