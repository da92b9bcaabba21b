"""Loopback port ranges for the clusters the cluster tests start (Kafka nodes, Redis Cluster
primaries): a base whose every port is free, below the kernel's ephemeral range."""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections.abc import Sequence

from wearmon.settings import REDIS_BUS_OFFSET, Settings
from wearmon.stack import LocalStack, port_open

#: primaries of the tests' Redis Clusters, and the port step between them
REDIS_SHARDS = 3
REDIS_STEP = 10


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_base(nodes: int, step: int, offsets: Sequence[int] = (0,)) -> int:
    """A port base such that ``base + i * step + off`` is free for each node ``i`` and each
    of ``offsets`` (a Kafka node's controller one above; a Redis node's bus 10000 above)."""
    for _ in range(200):
        base = random.randrange(20_000, 32_000)
        if all(bindable(base + i * step + off) for i in range(nodes) for off in offsets):
            return base
    raise RuntimeError(f"no free port range for {nodes} cluster nodes")


def redis_cluster_ports() -> dict[str, int]:
    """The ``ports`` settings of a Redis Cluster of ``REDIS_SHARDS`` primaries on free
    ports (their buses too)."""
    base = port_base(REDIS_SHARDS, REDIS_STEP, (0, REDIS_BUS_OFFSET))
    return {"redis": base, "redis_step": REDIS_STEP}


def redis_primary_pid(settings: Settings, port: int) -> int:
    """The pid of the stack's running Redis Cluster primary at ``port``."""
    st = next(
        s for s in LocalStack(settings).status()
        if s.name.startswith("redis-") and s.address.endswith(f":{port}")
    )  # fmt: skip
    assert st.pid is not None and st.running, f"the Redis primary at {port} is not running"
    return st.pid


def kill_redis_primaries(settings: Settings, ports: Sequence[int], timeout_s: float = 10) -> None:
    """SIGKILL the stack's primaries at ``ports`` and wait until none accepts connections
    (a killed child lingers as a zombie of the test process: its port, not /proc, says)."""
    for port in ports:
        os.kill(redis_primary_pid(settings, port), signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while any(port_open(p) for p in ports):
        assert time.monotonic() < deadline, "a killed primary still accepts connections"
        time.sleep(0.05)
