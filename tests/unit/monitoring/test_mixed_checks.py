"""A live check whose newest windows come from many devices mixes people: it is scored
against the threshold calibrated on checks of that composition, on real seglearn windows."""

from __future__ import annotations

from typing import Any

import numpy as np

from monitoring.calibration import MIXED_DEVICES
from monitoring.drift import LiveBatch, c2st_threshold, check
from wearmon.signals.features import window_features

SWAP = [1, 0, 2, 4, 3, 5]  # x <-> y on both sensors


def _mixed(data: Any, devices: int, seed: int, swap: bool) -> LiveBatch:
    """The newest windows of ``devices`` devices of the unseen subjects 9 and 10, as a live
    check sees them: a stretch of consecutive windows of each."""
    x, groups, _ = data
    rng = np.random.default_rng(seed)
    per = 100 // devices + 1
    parts, devs = [], []
    for d in range(devices):
        rows = np.flatnonzero(groups == ("9", "10")[d % 2])
        start = int(rng.integers(0, len(rows) - per))
        w = x[rows[start : start + per]]
        parts.append(w[:, :, SWAP] if swap else w)
        devs += [f"dev-{d}"] * per
    f = window_features(np.concatenate(parts))
    n = len(f)
    return LiveBatch(
        f, np.asarray(devs), np.asarray(["REST"] * n), np.full(n, np.nan),
        np.arange(n, dtype=np.int64), np.asarray(["7"] * n),
    )  # fmt: skip


def test_calibration_holds_a_threshold_per_composition(reference: Any) -> None:
    _, cal = reference
    by = cal["thresholds"]["c2st_devices"]
    assert sorted(int(k) for k in by) == sorted(MIXED_DEVICES)
    assert all(v > 0 for v in by.values())
    assert c2st_threshold(cal["thresholds"], 1) == cal["thresholds"]["c2st"]
    assert c2st_threshold(cal["thresholds"], 50) == by[str(max(MIXED_DEVICES))]
    assert c2st_threshold({"c2st": 4.0}, 12) == 4.0  # an older calibration: one threshold


def test_a_twelve_device_check_is_quiet_clean_and_alarms_on_an_axis_swap(
    data: Any, reference: Any
) -> None:
    ref, _ = reference
    clean = [check(_mixed(data, 12, s, False), ref, at_ms=s) for s in range(6)]
    swapped = [check(_mixed(data, 12, s, True), ref, at_ms=s) for s in range(6)]
    assert not any(r.drifted for r in clean), [round(r.score, 2) for r in clean]
    assert all(r.drifted for r in swapped), [round(r.score, 2) for r in swapped]
