"""Replay counters on a Prometheus endpoint (a private registry; no device ids as labels)."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger(__name__)


class ReplayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.samples = Counter(
            "wearmon_replay_samples", "Samples handed to the producer", ["sensor"], registry=r
        )
        self.messages = Counter(
            "wearmon_replay_messages", "Messages handed to the producer", ["kind"], registry=r
        )
        self.bytes = Counter("wearmon_replay_bytes", "Encoded message bytes produced", registry=r)
        self.delivered = Counter(
            "wearmon_replay_delivered", "Messages acknowledged by the broker", registry=r
        )
        self.failed = Counter(
            "wearmon_replay_delivery_failures", "Messages the broker did not take", registry=r
        )
        self.injected = Counter(
            "wearmon_replay_injected",
            "Injected faults and drift (batches, or samples for drift)",
            ["kind"],
            registry=r,
        )
        self.lag = Gauge(
            "wearmon_replay_lag_seconds", "Send time behind the paced schedule", registry=r
        )
        self.in_flight = Gauge(
            "wearmon_replay_in_flight", "Messages waiting for a delivery report", registry=r
        )
        self.devices = Gauge("wearmon_replay_devices", "Virtual devices replaying", registry=r)
        self._server: Any = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> bool:
        """Start the /metrics endpoint; a port in use is a warning, not a failure."""
        try:
            self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            log.warning("replay metrics not served on port %d: %s", port, exc)
            return False
        log.info("replay metrics on http://%s:%d/metrics", addr, port)
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
