"""Virtual devices: pseudonymous ids, staggered starts, playlists rotating through recordings."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from wearmon.schemas import check_device_id

T = TypeVar("T")


def device_id(index: int, seed: int = 0) -> str:
    """A pseudonymous, stable device id: ``dev-`` + 8 hex digits of a hash of (seed, index)
    (it follows the worker's device-id rule, :func:`wearmon.schemas.check_device_id`)."""
    digest = hashlib.sha256(f"wearmon-replay:{seed}:{index}".encode()).hexdigest()
    return check_device_id(f"dev-{digest[:8]}")


def device_ids(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct ids (a hash collision, astronomically rare, is resolved by re-hashing)."""
    out: list[str] = []
    seen: set[str] = set()
    for i in range(n):
        did, k = device_id(i, seed), 0
        while did in seen:
            k += 1
            did = device_id(i, seed + 7919 * k)
        seen.add(did)
        out.append(did)
    return out


def playlists(items: Sequence[T], n_devices: int) -> list[list[T]]:
    """Recordings dealt round-robin: device ``i`` plays ``i, i+n, i+2n, ...`` back to back.

    With more devices than recordings, device ``i`` plays recording ``i mod len(items)``, so
    every device has something and every recording is played at least once.
    """
    if not items:
        raise ValueError("no recordings")
    if n_devices >= len(items):
        return [[items[i % len(items)]] for i in range(n_devices)]
    return [list(items[i::n_devices]) for i in range(n_devices)]
