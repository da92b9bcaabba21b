"""Padding a batch up to a bucket changes no prediction, and picks the smallest bucket."""

from __future__ import annotations

import numpy as np

from trainer.model import ModelConfig, build_model
from trainer.serving import BUCKETS, ServingModel
from wearmon.signals.normalize import Scaler


def test_padding_to_buckets_changes_no_prediction(tiny_config: ModelConfig) -> None:
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, size=(70, 200, 6)).astype(np.float32)
    scaler = Scaler.fit(x)
    served = ServingModel(
        build_model(tiny_config, 5), version="t", classes=list("abcde"), scaler=scaler
    )
    assert served.buckets == BUCKETS
    for n in (1, 7, 40, 64, 70):
        assert served._bucket(n) == min(b for b in BUCKETS if b >= n)
    one_call = served.predict_proba(x)  # 70 windows padded to 96
    alone = np.concatenate([served.predict_proba(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(one_call, alone, atol=1e-5)
    assert served.predict_proba(x[:40]).shape == (40, 5)
