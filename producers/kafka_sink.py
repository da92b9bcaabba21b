"""The Kafka edge of the replay: preflight checks, topic creation, an idempotent producer.

confluent-kafka's own log lines (connection refused, ...) go to this module's logger at
DEBUG level; what the user sees is one :class:`~wearmon.errors.KafkaUnavailableError` line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from wearmon.errors import ConfigError, KafkaUnavailableError
from wearmon.kafka_errors import ConnectErrors
from wearmon.settings import KafkaSettings

log = logging.getLogger(__name__)


class _LibrdkafkaLog:
    """librdkafka logs as DEBUG records of this module (no stack traces on stderr)."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        log.debug(fmt, *args)


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    conf = kafka.confluent_config()
    conf["logger"] = _LibrdkafkaLog()
    return conf


def ensure_topics(
    kafka: KafkaSettings,
    topics: Sequence[str],
    *,
    timeout_s: float = 5.0,
    partitions: Mapping[str, int] | None = None,
) -> list[str]:
    """Fail fast if the broker is unreachable; create missing topics (or fail when disabled)
    with ``kafka.partitions`` partitions each, or the number ``partitions`` gives a topic,
    replicated as :meth:`KafkaSettings.replication` gives for the brokers up (a cluster with
    fewer brokers than ``kafka.replication_factor``: one ConfigError line). Existing topics
    are left as they are.

    Returns the topics that were created. Used by the replay and the worker alike.
    """
    counts = {t: int((partitions or {}).get(t, kafka.partitions)) for t in topics}
    errors = ConnectErrors()  # a TLS or SASL failure is named, not "transport failure"
    conf: dict[str, Any] = {**client_config(kafka), "socket.connection.setup.timeout.ms": 3000}
    conf["error_cb"] = errors
    admin = AdminClient(conf)
    md = _metadata(admin, errors, kafka, timeout_s)
    missing = [t for t in dict.fromkeys(topics) if t not in md.topics]
    if not missing:
        return []
    if not kafka.create_topics:
        raise ConfigError(
            f"Kafka topic {missing[0]!r} does not exist and topic creation is disabled "
            "(WEARMON_KAFKA__CREATE_TOPICS=false)"
        )
    brokers = max(1, len(md.brokers))
    replicas, min_isr = kafka.replication(brokers)  # a ConfigError line when too few brokers
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=counts[t],
                replication_factor=replicas,
                config={"min.insync.replicas": str(min_isr)},
            )
            for t in missing
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    for topic, fut in futures.items():
        try:
            fut.result(timeout=timeout_s + 5)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise KafkaUnavailableError(
                f"cannot create topic {topic!r} (replication factor {replicas}, "
                f"min.insync.replicas {min_isr}): {_reason(exc)}"
            ) from None
        log.info(
            "created topic %s with %d partitions, %d replicas, min.insync.replicas %d",
            topic, counts[topic], replicas, min_isr,
        )  # fmt: skip
    _await_metadata(admin, missing, timeout_s)
    return missing


#: the broker's metadata is asked for in steps this long, so that a TLS or SASL failure (which
#: librdkafka retries forever) ends the wait at once instead of after the whole timeout
METADATA_STEP_S = 1.0


def _metadata(
    admin: AdminClient, errors: ConnectErrors, kafka: KafkaSettings, timeout_s: float
) -> Any:
    """The cluster's metadata within ``timeout_s``, or one KafkaUnavailableError line: the
    TLS/SASL error as soon as the client reports one, else the last reason at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            return admin.list_topics(timeout=max(0.1, min(METADATA_STEP_S, left)))
        except KafkaException as exc:
            admin.poll(0)  # serve error_cb
            if errors.first is None and time.monotonic() < deadline:
                continue
            raise KafkaUnavailableError(
                f"Kafka broker at {kafka.bootstrap_servers} unreachable within {timeout_s:g} s "
                f"({errors.reason(admin, _reason(exc))})"
                if errors.first is None
                else f"Kafka broker at {kafka.bootstrap_servers} refused the connection: "
                f"{errors.first}"
            ) from None


def _await_metadata(admin: AdminClient, topics: Sequence[str], timeout_s: float) -> None:
    """Wait until the brokers' metadata lists ``topics``: a KRaft broker learns of a topic a
    moment after the controller created it (a client asking at once may not see it yet)."""
    deadline = time.monotonic() + timeout_s
    pending = set(topics)
    while pending:
        with contextlib.suppress(KafkaException):
            pending -= set(admin.list_topics(timeout=max(0.5, timeout_s / 5)).topics)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if pending:
        log.warning("created topics not yet in the metadata after %.0f s: %s", timeout_s,
                    ", ".join(sorted(pending)))  # fmt: skip


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return err.str()
    return str(exc)


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    delivered_bytes: int = 0
    first_error: str | None = None


class KafkaSink:
    """An idempotent producer (acks=all) with counted delivery reports and bounded memory.

    ``produce`` never holds more than ``max_in_flight`` messages (or ``max_in_flight_kb``)
    in the client: when the queue is full it serves delivery reports until there is room.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        max_in_flight: int = 100_000,
        max_in_flight_kb: int = 64 * 1024,
        linger_ms: int = 20,
        compression: str = "lz4",
        on_delivery: Callable[[bool, int], None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        conf = client_config(kafka)
        conf.update(
            {
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": linger_ms,
                "compression.type": compression,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": max_in_flight,
                "queue.buffering.max.kbytes": max_in_flight_kb,
                "message.timeout.ms": 30_000,
            }
        )
        conf.update(extra or {})
        self.stats = DeliveryStats()
        self._on_delivery_hook = on_delivery
        self._producer = Producer(conf)
        self.full_waits = 0

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.stats.delivered += 1
            self.stats.delivered_bytes += len(msg.value() or b"")
            ok = True
        else:
            self.stats.failed += 1
            if self.stats.first_error is None:
                self.stats.first_error = err.str()
                log.error("delivery to %s failed: %s", msg.topic(), err.str())
            ok = False
        if self._on_delivery_hook is not None:
            self._on_delivery_hook(ok, len(msg.value() or b""))

    def produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                return
            except BufferError:
                self.full_waits += 1
                self._producer.poll(0.05)

    def poll(self, timeout_s: float = 0.0) -> int:
        return self._producer.poll(timeout_s)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered."""
        deadline = time.monotonic() + timeout_s
        remaining = len(self._producer)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        return remaining

    def __len__(self) -> int:
        return len(self._producer)
