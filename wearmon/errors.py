"""The error hierarchy. Every error wearmon raises on purpose is a WearmonError.

Messages are one line, name what was wrong and where (file, row, column, topic, ...), and are
safe to show to a user: the CLI prints them as they are and exits non-zero.
"""

from __future__ import annotations


class WearmonError(Exception):
    """Root of every error that wearmon raises on purpose."""


class ConfigError(WearmonError):
    """A setting is missing or invalid."""


class PrerequisiteError(WearmonError):
    """A program the local stack needs (java, mvn, redis-server, prometheus) is missing."""


class StackError(WearmonError):
    """A local stack service failed to start, stop or become ready."""


class BadRecordingError(WearmonError):
    """A recording cannot be read: missing column, unparseable cell, empty file, ..."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        text = f"{': '.join([', '.join(where), message]) if where else message}"
        super().__init__(text)
        self.path = path
        self.row = row
        self.column = column


class SchemaError(WearmonError):
    """A message does not match its schema (undecodable, wrong version, bad values)."""


class IncompatibleModelError(WearmonError):
    """A model does not fit the canonical window (shape, channels, classes)."""


class RegistryError(WearmonError):
    """The model registry cannot be reached or holds no such model/alias."""


class KafkaUnavailableError(WearmonError):
    """The Kafka broker cannot be reached in time."""


class DashboardQueryError(WearmonError):
    """A dashboard query failed against the live Prometheus or Redis (parse error, refused)."""


class GrafanaError(WearmonError):
    """Grafana refused or could not be reached (dashboards push, annotations)."""


class ExportError(WearmonError):
    """A model could not be converted to, loaded in or checked on an inference backend."""


class MonitorError(WearmonError):
    """The drift monitor cannot run a check or hold its state (no champion, bad state, ...)."""
