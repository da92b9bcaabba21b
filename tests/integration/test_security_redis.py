"""Redis over TLS, for real: a redis-server that only speaks TLS (no plain port), asks for a
client certificate and a password, reached through every path wearmon uses (the stream
sink, the model manager's pub/sub, ``wearmon watch``); a wrong CA is one clear error line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_processor.models import CHAMPION_CHANNEL, ModelManager
from stream_processor.sinks import RedisSink, latest_key
from tests.integration.security_support import Pki, make_pki, tls_redis
from wearmon.schemas import Prediction
from wearmon.settings import Settings

pytestmark = pytest.mark.integration

PASSWORD = "tls-redis-pw-5d1e"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_port(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[int]:
    with tls_redis(tmp_path_factory.mktemp("redis-tls"), pki, PASSWORD) as port:
        yield port


def _settings(port: int, pki: Pki, **redis: object) -> Settings:
    base: dict[str, object] = {
        "url": f"redis://127.0.0.1:{port}/0",
        "tls": True,
        "password": PASSWORD,
        "tls_ca_file": pki.ca,
        "tls_cert_file": pki.client_cert,
        "tls_key_file": pki.client_key,
    }
    return Settings(redis={**base, **redis})


def _env(port: int, pki: Pki, repo_root: Path, **over: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARMON_")}
    env.update(
        {
            "WEARMON_REDIS__URL": f"redis://127.0.0.1:{port}/0",
            "WEARMON_REDIS__TLS": "true",
            "WEARMON_REDIS__PASSWORD": PASSWORD,
            "WEARMON_REDIS__TLS_CA_FILE": str(pki.ca),
            "WEARMON_REDIS__TLS_CERT_FILE": str(pki.client_cert),
            "WEARMON_REDIS__TLS_KEY_FILE": str(pki.client_key),
            # a closed port: watch shows "unreachable" rates instead of waiting for a worker
            "WEARMON_METRICS__STREAM_PORT": "1",
            "PYTHONPATH": str(repo_root),
            "COLUMNS": "200",  # rich's table width: whole device ids
        }
    )
    env.update(over)
    return env


def _watch(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", "watch", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _prediction(device: str) -> Prediction:
    now = int(time.time() * 1000)
    return Prediction(
        device=device,
        window_start_ms=now - 4000,
        window_end_ms=now,
        label="REST",
        confidence=0.9,
        probs=[0.1, 0.9],
        model_version="7",
        processed_ms=now,
    )


def test_sink_writes_over_tls_with_client_cert_and_password(tls_port: int, pki: Pki) -> None:
    settings = _settings(tls_port, pki)
    assert settings.redis.url.startswith("rediss://")
    sink = RedisSink.from_settings(settings)
    sink.write([_prediction("tls-dev-1")])
    # read back on a second connection: the rediss:// URL alone (no tls flag) means TLS too
    reader = RedisSink.from_settings(
        _settings(tls_port, pki, url=f"rediss://127.0.0.1:{tls_port}/0", tls=False)
    ).client
    assert reader.hget(latest_key("tls-dev-1"), "label") == b"REST"
    sink.client.close()
    reader.close()


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        # TLS 1.3: the server's alert, or only the closed socket when the client writes first
        (
            {"tls_cert_file": None, "tls_key_file": None},
            ("alert certificate required", "eof occurred"),
        ),
        ({"password": "wrong"}, ("password",)),
        ({"tls_ca_file": "OTHER"}, ("certificate verify failed",)),
    ],
)
def test_server_refuses_what_it_should(
    tls_port: int, pki: Pki, change: dict[str, object], expect: tuple[str, ...]
) -> None:
    import redis

    if change.get("tls_ca_file") == "OTHER":
        change = {"tls_ca_file": pki.other_ca}
    client = RedisSink.from_settings(_settings(tls_port, pki, **change)).client
    with pytest.raises(redis.RedisError) as err:
        client.ping()
    client.close()
    assert any(e in str(err.value).lower() for e in expect), err.value


def test_model_manager_pubsub_over_tls(tls_port: int, pki: Pki) -> None:
    """A publish on the champion channel makes the manager look up the champion at once
    (its poll interval is 60 s): the asyncio pub/sub client subscribed over TLS."""
    settings = _settings(tls_port, pki).model_copy(
        update={"stream": Settings().stream.model_copy(update={"model_poll_s": 60.0})}
    )
    lookups: list[float] = []
    manager = ModelManager(settings, version_fn=lambda: lookups.append(time.monotonic()))
    publisher = RedisSink.from_settings(settings).client

    async def scenario() -> float:
        task = asyncio.create_task(manager.run(settings.redis))
        try:
            deadline = time.monotonic() + 10
            while publisher.pubsub_numsub(CHAMPION_CHANNEL)[0][1] < 1:
                assert time.monotonic() < deadline, "the manager never subscribed"
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
            sent = time.monotonic()
            publisher.publish(CHAMPION_CHANNEL, "42")
            while not lookups:
                assert time.monotonic() < sent + 10, "no lookup after the publish"
                await asyncio.sleep(0.05)
            return lookups[0] - sent
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    delay = asyncio.run(scenario())
    publisher.close()
    assert delay < 5.0


def test_watch_cli_reads_over_tls(tls_port: int, pki: Pki, repo_root: Path) -> None:
    sink = RedisSink.from_settings(_settings(tls_port, pki))
    sink.write([_prediction("tls-watch-dev")])
    sink.client.close()
    proc = _watch(_env(tls_port, pki, repo_root))
    assert proc.returncode == 0, proc.stderr
    assert "tls-watch-dev" in proc.stdout


def test_wrong_ca_is_one_line_without_the_password(
    tls_port: int, pki: Pki, repo_root: Path
) -> None:
    env = _env(
        tls_port,
        pki,
        repo_root,
        WEARMON_REDIS__URL=f"redis://app:url-secret-88@127.0.0.1:{tls_port}/0",
        WEARMON_REDIS__TLS_CA_FILE=str(pki.other_ca),
    )
    proc = _watch(env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: cannot read predictions from rediss://app:***@127.0.0.1")
    assert "certificate verify failed" in lines[0]
    assert "url-secret-88" not in proc.stderr + proc.stdout
    assert PASSWORD not in proc.stderr + proc.stdout
