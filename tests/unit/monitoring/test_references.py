"""The reference of a version that came without a profile or calibration (an imported model):
the monitor uses the base data set's windows, computes the calibration once and caches it
under the data dir; a corrupt cached calibration is a one-line error naming the file."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest

from monitoring.calibration import cache_path
from monitoring.drift import CheckConfig
from monitoring.service import References
from tests.unit.trainer.ab_models import register
from wearmon.errors import MonitorError
from wearmon.settings import Settings


def test_imported_model_gets_base_reference_and_a_cached_calibration(tmp_path: Path) -> None:
    from trainer import registry

    settings = Settings(data_dir=tmp_path / "data")
    version = register(settings, tmp_path / "models", "smart")
    assert registry.read_reference_profile(settings, version) is None
    assert registry.read_calibration(settings, version) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = References(settings, CheckConfig()).get(version)
    assert ref.version == version and len(ref.features) == 2229  # the seglearn windows
    assert ref.calibration["subjects"] == sorted(str(s) for s in range(1, 11))
    cached = cache_path(settings, version)
    assert json.loads(cached.read_text())["thresholds"] == ref.calibration["thresholds"]
    t0 = time.perf_counter()
    again = References(settings, CheckConfig()).get(version)  # from the cache: no recompute
    assert time.perf_counter() - t0 < 5.0
    assert again.calibration["thresholds"] == ref.calibration["thresholds"]
    cached.write_text('{"format": 1}')
    with pytest.raises(MonitorError, match=f"{cached.name}: not a drift calibration"):
        References(settings, CheckConfig()).get(version)
