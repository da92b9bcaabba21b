"""Ensembles and mirror test-time averaging are one Keras model: one compiled call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.model import (
    ModelConfig,
    average_models,
    build_model,
    mirror,
    predict_proba,
    with_mirror_tta,
)
from trainer.serving import ServingModel
from wearmon.signals.normalize import Scaler


@pytest.fixture
def scaler() -> Scaler:
    return Scaler(
        mean=np.array([0.5, 9.0, -1.0, 2.0, -3.0, 1.0], np.float32),
        scale=np.array([3.0, 4.0, 5.0, 80.0, 90.0, 70.0], np.float32),
    )


def _x() -> np.ndarray:
    rng = np.random.default_rng(2)
    return (rng.normal(size=(5, 200, 6)) * [3, 3, 3, 40, 40, 40]).astype(np.float32)


@pytest.mark.slow
def test_ensemble_and_mirror_tta_average_probabilities(
    tiny_config: ModelConfig, scaler: Scaler, tmp_path: Path
) -> None:
    import keras

    members = []
    for j in range(2):
        keras.utils.set_random_seed(j)
        members.append(build_model(tiny_config, 7))
    x = _x()
    each = [predict_proba(m, x, scaler) for m in members]
    ens = average_models(members)
    np.testing.assert_allclose(predict_proba(ens, x, scaler), np.mean(each, axis=0), atol=1e-5)

    tta = with_mirror_tta(ens, scaler)
    want = 0.5 * (predict_proba(ens, x, scaler) + predict_proba(ens, mirror(x), scaler))
    np.testing.assert_allclose(predict_proba(tta, x, scaler), want, atol=1e-5)

    # saved and loaded as one .keras file, served by the same compiled call
    tta.save(str(tmp_path / "model.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "model.keras"), compile=False)
    served = ServingModel(loaded, version="t", classes=[str(i) for i in range(7)], scaler=scaler)
    np.testing.assert_allclose(served.predict_proba(x), want, atol=1e-5)
