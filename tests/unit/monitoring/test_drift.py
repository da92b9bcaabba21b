"""The drift check on real data: the seglearn watch windows of subjects the reference never
saw. Calibrated on subjects 1-8, checked on subjects 9 and 10 in checks of 100 windows: clean
windows do not alarm, a gain of x1.5 and an axis swap do."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from monitoring.calibration import calibrate, validate
from monitoring.drift import LiveBatch, Reference, build_reference, check
from tests.unit.monitoring.conftest import LIVE
from wearmon.errors import MonitorError
from wearmon.signals.features import FEATURE_NAMES, features_frame, window_features


def _batches(data: Any, drift: str) -> list[LiveBatch]:
    x, groups, labels = data
    out = []
    for s in LIVE:
        idx = np.flatnonzero(groups == s)
        w = x[idx].astype(np.float64)
        if drift == "gain1.5":
            w = w * 1.5
        elif drift == "swap":
            w = w[..., [1, 0, 2, 4, 3, 5]]
        f = window_features(w)
        lab = np.asarray([labels[i] for i in idx])
        for start in range(0, len(idx) - 100 + 1, 50):
            sl = slice(start, start + 100)
            out.append(
                LiveBatch(
                    f[sl],
                    np.full(100, f"dev-{s}"),
                    lab[sl],
                    np.full(100, 0.9),
                    np.arange(100, dtype=np.int64) * 2000,
                    np.full(100, "7"),
                )
            )
    return out


def test_calibration_is_json_and_valid(reference: tuple[Reference, dict[str, Any]]) -> None:
    _, cal = reference
    again = json.loads(json.dumps(cal))
    assert validate(again, "test") == again
    assert set(again["thresholds"]["features"]) == set(FEATURE_NAMES)
    assert again["subjects"] == sorted(str(s) for s in range(1, 9))
    assert 0.0 <= again["held_out"]["false_alarm_rate"] <= 0.1


def test_clean_unseen_subjects_do_not_alarm(data: Any, reference: Any) -> None:
    ref, _ = reference
    results = [check(b, ref, at_ms=i) for i, b in enumerate(_batches(data, "clean"))]
    assert len(results) >= 6
    assert not any(r.drifted for r in results), [round(r.score, 2) for r in results]
    assert all(r.drifted_devices == 0 for r in results)
    assert all(0.0 <= r.class_mix <= 1.0 and r.low_confidence == 0.0 for r in results)


@pytest.mark.parametrize("drift", ["gain1.5", "swap"])
def test_gain_and_axis_swap_alarm(data: Any, reference: Any, drift: str) -> None:
    ref, _ = reference
    results = [check(b, ref, at_ms=i) for i, b in enumerate(_batches(data, drift))]
    assert all(r.drifted for r in results), [round(r.score, 2) for r in results]
    top = results[0].summary()
    assert top["drifted"] == 1 and top["n_windows"] == 100 and top["model_version"] == "7"
    if drift == "gain1.5":  # gravity is the same for everyone: the physics check sees it
        assert min(r.gravity_score for r in results) > 1.0
    else:  # gravity magnitude is unchanged by a swap: the classifier test sees it
        assert min(r.c2st_score for r in results) > 1.0


def test_bad_inputs_are_named_errors(reference: Any) -> None:
    ref, cal = reference
    empty = LiveBatch(*(np.zeros((0, len(FEATURE_NAMES))),), *(np.zeros(0),) * 5)  # type: ignore[arg-type]
    with pytest.raises(MonitorError, match="at least one live window"):
        check(empty, ref, at_ms=0)
    with pytest.raises(MonitorError, match="lacks features"):
        build_reference(features_frame(np.zeros((20, 200, 6))).drop(columns=["Ax_mean"]),
                        version="3", calibration=cal)  # fmt: skip
    with pytest.raises(MonitorError, match="not a drift calibration"):
        validate({"format": 1, "thresholds": {"c2st": 1}}, "x.json")
    with pytest.raises(MonitorError, match="at least 3 subjects"):
        calibrate(features_frame(np.ones((20, 200, 6))), np.array(["a"] * 10 + ["b"] * 10))
