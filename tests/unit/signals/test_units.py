import numpy as np
import pytest

from wearmon.errors import BadRecordingError
from wearmon.signals import units


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
