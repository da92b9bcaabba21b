"""A Redis Cluster over TLS, for real: three primaries that only speak TLS (clients and the
cluster bus; no plain port), each asking for a client certificate and a password, joined by
``redis-cli --tls --cluster create``. wearmon reaches it with settings only
(``redis.cluster``, ``redis.tls`` and the certificate files): the cluster-aware clients find
the other primaries over TLS, the stream sink writes a batch slot by slot each window once,
the model manager's pub/sub and ``wearmon watch`` work through it, and a client without a
certificate or without TLS is refused in one line. Its own nodes on free ports: a few
seconds."""

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
from stream_processor.sinks import Checkpoint, RedisSink, checkpoint_key, history_key
from tests.integration.cluster_support import REDIS_SHARDS, REDIS_STEP, port_base
from tests.integration.security_support import Pki, make_pki, tls_redis_cluster
from tests.integration.test_security_redis import _prediction
from wearmon.settings import REDIS_BUS_OFFSET, Settings

pytestmark = pytest.mark.integration

PASSWORD = "tls-cluster-pw-8b2c"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[list[int]]:
    base = port_base(REDIS_SHARDS, REDIS_STEP, (0, REDIS_BUS_OFFSET))
    wanted = [base + i * REDIS_STEP for i in range(REDIS_SHARDS)]
    with tls_redis_cluster(tmp_path_factory.mktemp("tls-cluster"), pki, PASSWORD, wanted) as p:
        yield p


def _settings(ports: list[int], pki: Pki, **redis: object) -> Settings:
    base: dict[str, object] = {
        "url": f"redis://127.0.0.1:{ports[0]}/0",
        "cluster": True,
        "tls": True,
        "password": PASSWORD,
        "tls_ca_file": pki.ca,
        "tls_cert_file": pki.client_cert,
        "tls_key_file": pki.client_key,
    }
    return Settings(redis={**base, **redis})


def _env(ports: list[int], pki: Pki, repo_root: Path, **over: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEARMON_")}
    env.update(
        {
            "WEARMON_REDIS__URL": f"rediss://127.0.0.1:{ports[1]}/0",  # any node will do
            "WEARMON_REDIS__CLUSTER": "true",
            "WEARMON_REDIS__PASSWORD": PASSWORD,
            "WEARMON_REDIS__TLS_CA_FILE": str(pki.ca),
            "WEARMON_REDIS__TLS_CERT_FILE": str(pki.client_cert),
            "WEARMON_REDIS__TLS_KEY_FILE": str(pki.client_key),
            "WEARMON_METRICS__STREAM_PORT": "1",  # closed: no waiting for a worker's rates
            "PYTHONPATH": str(repo_root),
            "COLUMNS": "200",
        }
    )
    env.update(over)
    return env


def _cli(ports: list[int], pki: Pki, node: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "--tls", "--cacert", str(pki.ca), "--cert", str(pki.client_cert),
         "--key", str(pki.client_key), "-c", "-p", str(ports[node]), *args],
        env={**os.environ, "REDISCLI_AUTH": PASSWORD},
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_the_cluster_client_finds_every_primary_over_tls(ports: list[int], pki: Pki) -> None:
    client = _settings(ports, pki).redis.connect()
    try:
        primaries = sorted(n.port for n in client.get_primaries())
        assert primaries == sorted(ports), primaries  # the TLS ports the cluster announces
        for i in range(30):
            client.set(f"tls:{i}", i)
        sizes = [client.dbsize(target_nodes=n) for n in client.get_primaries()]
        assert all(n > 0 for n in sizes), sizes
        assert _cli(ports, pki, 2, "get", "tls:17") == "17"
    finally:
        client.close()


def test_the_sink_writes_a_batch_over_tls_slot_by_slot_each_window_once(
    ports: list[int], pki: Pki
) -> None:
    import msgspec

    sink = RedisSink.from_settings(_settings(ports, pki))
    assert sink.cluster
    client = sink.client
    devices = [f"tls-c-{i}" for i in range(9)]
    homes = {client.get_node_from_key(history_key(d)).port for d in devices}
    assert len(homes) > 1, homes
    preds = []
    for d in devices:
        p = _prediction(d)
        preds += [p, msgspec.structs.replace(p, window_start_ms=p.window_start_ms + 2000)]
    key = checkpoint_key("app-tls", "t", 0, "tid")
    states = {d: d.encode() for d in devices}
    for _ in range(2):  # the second batch: a retry, every window a duplicate
        out = sink.write(preds, None, [Checkpoint(key, 0, 7, states)])
    assert out.new == [False] * len(preds)
    assert [client.xlen(history_key(d)) for d in devices] == [2] * len(devices)
    assert sink.load_checkpoint("app-tls", "t", 0, "tid") == (7, states, False)
    client.close()


def test_the_champion_channel_reaches_a_worker_over_tls(ports: list[int], pki: Pki) -> None:
    """The model manager's asyncio cluster client subscribes over TLS; a publish through
    the sync cluster client makes it look the champion up (its poll interval is 60 s)."""
    settings = _settings(ports, pki).model_copy(
        update={"stream": Settings().stream.model_copy(update={"model_poll_s": 60.0})}
    )
    lookups: list[float] = []
    manager = ModelManager(settings, version_fn=lambda: lookups.append(time.monotonic()))
    publisher = settings.redis.connect()

    async def scenario() -> None:
        task = asyncio.create_task(manager.run(settings.redis))
        try:
            deadline = time.monotonic() + 10
            while not lookups:
                assert time.monotonic() < deadline, "no lookup after the publishes"
                assert not task.done(), task.exception()
                publisher.publish(CHAMPION_CHANNEL, "42")
                await asyncio.sleep(0.2)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    publisher.close()


def test_watch_reads_through_the_tls_cluster(ports: list[int], pki: Pki, repo_root: Path) -> None:
    sink = RedisSink.from_settings(_settings(ports, pki))
    devices = [f"tls-watch-{i}" for i in range(6)]  # on more than one primary
    sink.write([_prediction(d) for d in devices])
    sink.client.close()
    proc = subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", "watch", "--once"],
        env=_env(ports, pki, repo_root), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert all(d in proc.stdout for d in devices), proc.stdout


@pytest.mark.parametrize(
    ("over", "expect"),
    [
        # TLS 1.3: the server's alert, or only the closed socket when the client writes first
        ({"tls_cert_file": None, "tls_key_file": None}, ("certificate required", "eof")),
        ({"tls": False}, ("connection", "closed", "reset", "timeout")),
    ],
)
def test_a_client_without_its_certificate_or_tls_is_refused(
    ports: list[int], pki: Pki, over: dict[str, object], expect: tuple[str, ...]
) -> None:
    import redis

    settings = _settings(ports, pki, **over)
    with pytest.raises(redis.RedisError) as err:  # the cluster client asks for the slots at once
        settings.redis.connect(socket_timeout=3)
    assert str(err.value).startswith("no node of the Redis Cluster at "), err.value
    assert f"127.0.0.1:{ports[0]}/0 answers: " in str(err.value)
    assert any(e in str(err.value).lower() for e in expect), err.value
    assert PASSWORD not in str(err.value)


def test_watch_with_the_wrong_ca_is_one_line(ports: list[int], pki: Pki, repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", "watch", "--once"],
        env=_env(ports, pki, repo_root, WEARMON_REDIS__TLS_CA_FILE=str(pki.other_ca)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: cannot read predictions from rediss://127.0.0.1:")
    assert "certificate verify failed" in lines[0] and PASSWORD not in proc.stderr


def test_redis_cli_without_tls_gets_nothing(ports: list[int]) -> None:
    """No plain port: the TLS port does not answer a plain-text client's PING."""
    out = subprocess.run(
        ["redis-cli", "-p", str(ports[0]), "ping"],
        env={**os.environ, "REDISCLI_AUTH": PASSWORD},
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert "PONG" not in out.stdout
