"""Why a confluent-kafka client could not reach the broker, in one line.

When TLS or SASL fails, librdkafka's calls report only ``Local: Broker transport failure``;
the real reason (``SASL authentication error: ... Invalid username or password``,
``SSL handshake failed: ... certificate verify failed``) comes through the client's
``error_cb``. :class:`ConnectErrors` is such a callback: it keeps the first of those errors
so that the one-line error shown to the user can name it.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError

#: librdkafka's error codes of a failed TLS handshake or authentication.
SECURITY_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}
)


class ConnectErrors:
    """``error_cb`` of a confluent-kafka client that keeps the first TLS/SASL error."""

    def __init__(self) -> None:
        self.first: str | None = None

    def __call__(self, err: KafkaError) -> None:
        if self.first is None and err.code() in SECURITY_CODES:
            self.first = str(err.str())

    def reason(self, client: Any, fallback: str) -> str:
        """The TLS/SASL error ``client`` saw, else ``fallback`` (polls queued callbacks)."""
        if self.first is None:
            client.poll(0.5)
        return self.first or fallback
