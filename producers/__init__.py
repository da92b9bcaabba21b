"""Replay of recordings into Kafka as a live feed: pacing, virtual devices, fault and drift
injection. Pure planning lives in :mod:`producers.schedule` (no IO); Kafka at the edge in
:mod:`producers.kafka_sink`; :func:`producers.engine.replay` ties them together.

Typical use::

    from producers import ReplayConfig, load_seglearn, replay
    stats = replay(settings, load_seglearn(["1"]), ReplayConfig(speed=math.inf, devices=4))
"""

from __future__ import annotations

from producers.config import DriftConfig, FaultConfig, ReplayConfig, parse_speed
from producers.devices import device_id, device_ids
from producers.engine import ReplayStats, replay
from producers.inputs import load_files, load_seglearn
from producers.schedule import PlannedBatch, PlannedLabel, plan_replay

__all__ = [
    "DriftConfig",
    "FaultConfig",
    "PlannedBatch",
    "PlannedLabel",
    "ReplayConfig",
    "ReplayStats",
    "device_id",
    "device_ids",
    "load_files",
    "load_seglearn",
    "parse_speed",
    "plan_replay",
    "replay",
]
