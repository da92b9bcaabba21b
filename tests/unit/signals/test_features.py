import numpy as np

from wearmon.signals.features import FEATURE_NAMES, features_frame, window_features


def test_features_values() -> None:
    t = np.arange(200) / 50.0
    x = np.zeros((2, 200, 6))
    x[0, :, 0] = 2.0 + np.sin(2 * np.pi * 5.0 * t)  # 5 Hz around 2
    x[1, :, 3] = 3.0
    x[1, :, 4] = 4.0
    f = window_features(x)
    assert f.shape == (2, len(FEATURE_NAMES)) and f.dtype == np.float64
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    assert np.isclose(f[0, col["Ax_mean"]], 2.0)
    assert np.isclose(f[0, col["Ax_std"]], np.sqrt(0.5))
    assert np.isclose(f[0, col["Ax_domfreq"]], 5.0)
    assert np.isclose(f[0, col["Ax_energy"]], 4.5)
    assert np.isclose(f[1, col["gyro_mag_mean"]], 5.0)
    assert np.isclose(f[1, col["gyro_mag_std"]], 0.0)
    df = features_frame(x.astype(np.float32))
    assert list(df.columns) == FEATURE_NAMES and len(df) == 2
    assert window_features(np.zeros((0, 200, 6))).shape == (0, len(FEATURE_NAMES))
