from __future__ import annotations

import math

import pytest

from producers.config import DriftConfig, FaultConfig, ReplayConfig, parse_axes, parse_speed
from producers.devices import device_id, device_ids, playlists
from producers.pacing import LagStats, Pacer
from wearmon.errors import ConfigError


def test_parse_speed() -> None:
    assert parse_speed("1") == 1.0
    assert parse_speed("10") == 10.0
    assert parse_speed("max") == math.inf
    for bad in ("fast", "0", "-1"):
        with pytest.raises(ConfigError):
            parse_speed(bad)


def test_parse_axes() -> None:
    assert parse_axes("-x,y,z") == ((0, -1.0), (1, 1.0), (2, 1.0))
    assert parse_axes("y,x,-z") == ((1, 1.0), (0, 1.0), (2, -1.0))
    for bad in ("x,x,z", "x,y", "a,b,c"):
        with pytest.raises(ConfigError):
            parse_axes(bad)


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        FaultConfig(drop=1.5)
    with pytest.raises(ConfigError):
        FaultConfig(gap_every_s=10)  # without a length
    with pytest.raises(ConfigError):
        DriftConfig(sensors=("magnetometer",))
    with pytest.raises(ConfigError):
        ReplayConfig(devices=0)
    assert DriftConfig(axes="mirror").axes_for("accel") == parse_axes("-x,y,z")
    assert DriftConfig(axes="mirror").axes_for("gyro") == parse_axes("x,-y,-z")


def test_device_ids_are_stable_pseudonymous_and_distinct() -> None:
    ids = device_ids(1000, seed=3)
    assert len(set(ids)) == 1000
    assert all(i.startswith("dev-") and len(i) == 12 for i in ids)
    assert ids[:5] == device_ids(5, seed=3)
    assert device_id(0, 3) != device_id(0, 4)


def test_playlists_rotate_through_recordings() -> None:
    assert playlists(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert playlists(["a", "b"], 5) == [["a"], ["b"], ["a"], ["b"], ["a"]]


def test_pacer_arithmetic() -> None:
    p = Pacer(speed=10.0, start=100.0)
    assert p.due_at(5000) == pytest.approx(100.5)
    assert p.wait_s(5000, now=100.2) == pytest.approx(0.3)
    assert p.position_ms(101.0) == pytest.approx(10_000)
    q = Pacer(speed=math.inf, start=100.0)
    assert not q.paced and q.due_at(1e9) == 100.0


def test_lag_stats_quantiles() -> None:
    s = LagStats(capacity=50)
    for i in range(1000):
        s.add(i / 1000)
    assert s.count == 1000 and s.max_s == pytest.approx(0.999)
    assert 0.2 < s.quantile(0.5) < 0.8
