"""Secrets of the local stack stay out of ``ps``, its state file and its logs; Prometheus runs
without the lifecycle API (no remote reload or shutdown)."""

from __future__ import annotations

import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from wearmon.settings import Settings
from wearmon.stack import LocalStack, free_port

PASSWORD = 'stack redis "pw" \\ c0ffee'  # a space, quotes and a backslash: quoted for redis.conf


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Redis (with a password) and Prometheus of a local stack; Kafka is not needed here."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("secured-stack"),
        ports={"redis": free_port(), "prometheus": free_port(), "kafka": free_port()},
        redis={"password": PASSWORD},
    )
    local = LocalStack(settings)
    local.up(timeout=60, services=("redis", "prometheus"))
    try:
        yield local
    finally:
        local.down()


def _args(pid: int) -> str:
    return subprocess.run(
        ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.integration
def test_no_password_in_ps_state_or_logs(secured: LocalStack) -> None:
    import redis

    pids = {s.name: s.pid for s in secured.status() if s.running}
    assert set(pids) == {"redis", "prometheus"}
    args = {name: _args(pid) for name, pid in pids.items() if pid is not None}
    assert "redis-server" in args["redis"]
    assert all(PASSWORD not in a for a in args.values()), args
    assert "requirepass" not in args["redis"]
    conf = secured.root / "redis" / "redis.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert conf.read_text().startswith("requirepass ")
    assert PASSWORD not in secured.state_file.read_text()
    assert all(PASSWORD not in p.read_text() for p in secured.logs.glob("*.log"))
    # the password in the file, quoted, is the one Redis enforces
    url = secured.settings.redis.url
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(url).ping()
    assert redis.Redis.from_url(url, **secured.settings.redis.client_kwargs()).ping()


@pytest.mark.integration
def test_prometheus_lifecycle_api_is_off(secured: LocalStack) -> None:
    pid = next(s.pid for s in secured.status() if s.name == "prometheus")
    assert pid is not None
    assert "--web.enable-lifecycle" not in _args(pid)
    port = secured.settings.ports.prometheus
    req = urllib.request.Request(f"http://127.0.0.1:{port}/-/quit", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 403
    assert secured.ready("prometheus")
