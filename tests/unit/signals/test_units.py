from pathlib import Path

import numpy as np
import pytest
import xlsxwriter
from python_calamine import CalamineWorkbook

from wearmon.errors import BadRecordingError
from wearmon.signals import units
from wearmon.signals.readers import read_garmin_pair
from wearmon.signals.recording_gen import make_recording


def _grav(scale: float, n: int = 500) -> np.ndarray:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v * scale


@pytest.mark.parametrize(("scale", "unit"), [(1000.0, "mg"), (1.0, "g"), (9.81, "m/s2")])
def test_detect_accel_unit(scale: float, unit: str) -> None:
    assert units.detect_accel_unit(_grav(scale)) == unit


def test_detect_accel_unit_rejects_nonsense() -> None:
    with pytest.raises(BadRecordingError, match="accelerometer unit"):
        units.detect_accel_unit(_grav(1e6))


def test_detect_gyro_unit() -> None:
    assert units.detect_gyro_unit(_grav(1.5)) == "rad/s"
    assert units.detect_gyro_unit(_grav(1.5 * 180 / np.pi)) == "deg/s"


def test_conversions() -> None:
    assert np.allclose(
        units.accel_to_canonical(np.array([[1000.0, 0, 0]]), "mg"), [[9.80665, 0, 0]]
    )
    assert np.allclose(units.accel_to_canonical(np.array([[1.0, 0, 0]]), "g"), [[9.80665, 0, 0]])
    assert np.allclose(units.gyro_to_canonical(np.array([[np.pi, 0, 0]]), "rad/s"), [[180, 0, 0]])
    with pytest.raises(BadRecordingError):
        units.gyro_to_canonical(np.zeros((1, 3)), "furlongs")


def test_garmin_gyro_at_rest_stays_deg_per_s(tmp_path: Path) -> None:
    """A resting wrist in deg/s looks like rad/s to detection; Garmin's documented unit wins."""
    acc, gyr, _labels = make_recording(tmp_path, subject=3, seed=1, max_exercises=1)
    rows = CalamineWorkbook.from_path(str(gyr)).get_sheet_by_index(0).to_python()
    header, body = rows[0], rows[1:]
    cols = [header.index(f"calibrated_gyro_{a}") for a in "xyz"]
    rng = np.random.default_rng(0)
    still = tmp_path / "still"
    still.mkdir()
    out = still / gyr.name
    wb = xlsxwriter.Workbook(str(out))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, header)
    for i, row in enumerate(body, start=1):
        cells = list(row)
        for c in cols:  # a wrist at rest: about 0.5 deg/s of noise
            n = len(str(cells[c]).strip("[]").split(","))
            cells[c] = str([round(float(v), 3) for v in 0.5 * rng.standard_normal(n)])
        ws.write_row(i, 0, cells)
    wb.close()
    assert units.detect_gyro_unit(0.5 * rng.standard_normal((1000, 3))) == "rad/s"  # the trap
    rec = read_garmin_pair(acc, out)
    assert rec.meta["units_in"]["gyro"] == "deg/s"
    assert float(np.median(np.abs(rec.gyro.xyz))) < 2.0  # not scaled by 57.3
