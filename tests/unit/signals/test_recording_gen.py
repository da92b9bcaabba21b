from pathlib import Path

import numpy as np
import pytest

from wearmon.signals.readers import read_garmin_pair, read_labels_csv
from wearmon.signals.recording_gen import make_recording
from wearmon.signals.windows import window_recording


@pytest.fixture(scope="module")
def rec_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_recording(tmp_path_factory.mktemp("rec"), subject=3, max_exercises=2, rest_s=5)


def test_make_recording_writes_garmin_pair_and_labels(rec_paths: list[Path]) -> None:
    acc, gyr, lab = rec_paths
    assert acc.name == "2025-03-24-07-52-19-accelerometer_data.xlsx"
    assert gyr.name == "2025-03-24-07-52-19-gyroscope_data.xlsx"
    assert lab.name == "2025-03-24-07-52-19-labels.csv"
    spans = read_labels_csv(lab)
    assert len(spans) == 2 and all(s.end_ms > s.start_ms for s in spans)


def test_generated_pair_reads_back_in_canonical_units(rec_paths: list[Path]) -> None:
    rec = read_garmin_pair(rec_paths[0], rec_paths[1])
    assert rec.meta["format"] == "garmin-excel" and len(rec.labels) == 2
    dt = np.diff(rec.accel.t_ms)
    assert 9 <= np.median(dt) <= 11 and dt.min() > 0
    assert rec.accel.t_ms[0] >= 1742802739000  # 2025-03-24 07:52:19 UTC
    g = np.median(np.linalg.norm(rec.accel.xyz, axis=1))
    assert 8.5 < g < 11.5  # m/s2
    res = window_recording(rec)
    assert len(res.windows) > 5 and res.skipped["gap"] == 0
    assert res.windows.labels is not None
    assert set(res.windows.labels) == {s.label for s in rec.labels}


def test_make_recording_is_deterministic(tmp_path: Path, rec_paths: list[Path]) -> None:
    again = make_recording(tmp_path, subject=3, max_exercises=2, rest_s=5)
    assert again[2].read_text() == rec_paths[2].read_text()
    a = read_garmin_pair(again[0], again[1])
    b = read_garmin_pair(rec_paths[0], rec_paths[1])
    assert np.array_equal(a.accel.t_ms, b.accel.t_ms) and np.array_equal(a.gyro.xyz, b.gyro.xyz)
