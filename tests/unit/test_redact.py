"""Secrets never shown: the one URL redaction helper, log records, settings reprs."""

from __future__ import annotations

import logging

import pytest

from wearmon import redact as redact_module
from wearmon.redact import install_log_redaction, redact
from wearmon.settings import Settings


def test_settings_repr_shows_no_secret() -> None:
    s = Settings(
        redis={
            "url": "redis://app:url-pw-1@db:6379/0",
            "password": "redis-pw-2",
            "tls_key_password": "key-pw-3",
        },
        kafka={"sasl_username": "wearmon", "sasl_password": "sasl-pw-4"},
        mlflow_tracking_uri="https://ml:token-5@mlflow.example/",
    )
    shown = repr(s) + str(s) + repr(s.redis) + repr(s.kafka) + s.redis.display_url
    for secret in ("url-pw-1", "redis-pw-2", "key-pw-3", "sasl-pw-4", "token-5"):
        assert secret not in shown
    assert "redis://app:***@db:6379/0" in shown
    assert s.redis.url == "redis://app:url-pw-1@db:6379/0"  # the client still gets it


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://u:p4ss@h:1/0", "redis://u:***@h:1/0"),
        ("rediss://:p4ss@h/0 and http://a:b@c", "rediss://:***@h/0 and http://a:***@c"),
        ("redis://h:6379/0?password=p4ss&db=1", "redis://h:6379/0?password=***&db=1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("kafka at 127.0.0.1:9092", "kafka at 127.0.0.1:9092"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_log_records_are_redacted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = logging.getLogRecordFactory()
    monkeypatch.setattr(redact_module, "_installed", False)
    try:
        install_log_redaction()
        log = logging.getLogger("wearmon.test.redact")
        with caplog.at_level(logging.INFO):
            log.info("connecting to %s", "redis://u:log-pw-6@h:1/0")
            try:
                raise ConnectionError("refused: redis://u:exc-pw-7@h:1/0")
            except ConnectionError:
                log.exception("failed")
    finally:  # the factory is process-wide: leave other tests' records alone
        logging.setLogRecordFactory(previous)
    assert "log-pw-6" not in caplog.text and "exc-pw-7" not in caplog.text
    assert "redis://u:***@h:1/0" in caplog.text
