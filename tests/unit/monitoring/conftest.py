"""Fixtures of the monitor tests: real seglearn windows and a reference calibrated on
subjects 1-8 (subjects 9 and 10 play the live, unseen people)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from monitoring.calibration import calibrate
from monitoring.drift import Reference, build_reference
from wearmon.signals.features import features_frame

LIVE = ("9", "10")


@pytest.fixture(scope="session")
def data() -> Any:
    from trainer.datasets import load_dataset

    ds = load_dataset("seglearn")
    order = np.lexsort((ds.start_ms, ds.recording))
    return ds.x[order], ds.groups[order].astype(str), [ds.classes[i] for i in ds.y[order]]


@pytest.fixture(scope="session")
def reference(data: Any) -> tuple[Reference, dict[str, Any]]:
    x, groups, labels = data
    train = ~np.isin(groups, LIVE)
    profile = features_frame(x[train])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cal = calibrate(profile, groups[train])
    counts = {c: labels.count(c) for c in set(labels)}
    return build_reference(profile, version="7", calibration=cal, class_counts=counts), cal
