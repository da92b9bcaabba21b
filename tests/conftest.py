"""Shared fixtures. ``integration`` tests get a real, isolated local stack.

The stack (Kafka KRaft broker, Redis, Prometheus) is started once per test session on free
loopback ports with its own temporary data directory, and stopped at the end. The Kafka jars
come from the shared cache (``make setup`` resolves them), so no test touches the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wearmon.settings import Settings
from wearmon.stack import LocalStack, free_port

_DATA_DIR = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """No test writes into the user's data directory (``.data`` of the checkout, or the
    one WEARMON_DATA_DIR names): code under test that builds its settings from the
    environment gets a temporary one (a unit test left an empty mlflow.db in ``.data``)."""
    tmp = tempfile.mkdtemp(prefix="wearmon-test-data-")
    config.stash[_DATA_DIR] = tmp
    os.environ["WEARMON_DATA_DIR"] = tmp


def pytest_unconfigure(config: pytest.Config) -> None:
    tmp = config.stash.get(_DATA_DIR, None)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def _distinct_free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the session's isolated stack: free ports, a fresh data directory."""
    kafka, controller, redis_port, prom, m1, m2, m3 = _distinct_free_ports(7)
    data_dir = tmp_path_factory.mktemp("stack-data")
    return Settings(
        data_dir=data_dir,
        ports={"kafka": kafka, "kafka_controller": controller, "redis": redis_port,
               "prometheus": prom},
        metrics={"stream_port": m1, "replay_port": m2, "monitor_port": m3},
    )  # fmt: skip


@pytest.fixture(scope="session")
def stack(stack_settings: Settings) -> Iterator[Settings]:
    """A running local stack for the whole session; yields its settings."""
    local = LocalStack(stack_settings)
    local.up(timeout=120)
    try:
        yield stack_settings
    finally:
        local.down()


@pytest.fixture
def redis_client(stack: Settings) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(stack.redis.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
def subprocess_env(session_subprocess_env: dict[str, str]) -> dict[str, str]:
    """Environment for a wearmon subprocess that talks to the session's stack."""
    return dict(session_subprocess_env)


@pytest.fixture(scope="session")
def session_subprocess_env(stack: Settings, repo_root: Path) -> dict[str, str]:
    """:func:`subprocess_env` for module-scoped fixtures (copy it before changing it)."""
    env = dict(os.environ)
    env.update(
        {
            "WEARMON_DATA_DIR": str(stack.data_dir),
            "WEARMON_PORTS__KAFKA": str(stack.ports.kafka),
            "WEARMON_PORTS__KAFKA_CONTROLLER": str(stack.ports.kafka_controller),
            "WEARMON_PORTS__REDIS": str(stack.ports.redis),
            "WEARMON_PORTS__PROMETHEUS": str(stack.ports.prometheus),
            "WEARMON_METRICS__STREAM_PORT": str(stack.metrics.stream_port),
            "WEARMON_METRICS__REPLAY_PORT": str(stack.metrics.replay_port),
            "WEARMON_METRICS__MONITOR_PORT": str(stack.metrics.monitor_port),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(repo_root),
        }
    )
    return env
