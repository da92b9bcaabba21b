"""Errors of the replay producer."""

from __future__ import annotations

from wearmon.errors import WearmonError


class DeliveryFailedError(WearmonError):
    """Some replayed messages were not acknowledged by the broker."""
