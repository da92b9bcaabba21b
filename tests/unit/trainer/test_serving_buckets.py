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


def test_xla_compiled_call_equals_the_plain_graph(tiny_config: ModelConfig) -> None:
    """The default XLA-compiled serving call gives the probabilities of the plain
    tf.function (``stream.jit_compile=false``) and of a direct Keras call."""
    import keras

    from wearmon.signals.normalize import standardize

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, size=(20, 200, 6)).astype(np.float32)
    scaler = Scaler.fit(x)
    model = build_model(tiny_config, 5)
    kw = {"version": "t", "classes": list("abcde"), "scaler": scaler, "buckets": (8, 32)}
    xla = ServingModel(model, **kw)
    plain = ServingModel(model, jit_compile=False, **kw)
    assert xla.jit_compile and not plain.jit_compile
    xla.warmup()  # compiles the two buckets
    direct = np.asarray(model(standardize(x, scaler), training=False))
    np.testing.assert_allclose(xla.predict_proba(x), direct, atol=1e-5)
    np.testing.assert_allclose(plain.predict_proba(x), direct, atol=1e-5)
    np.testing.assert_allclose(xla.predict_proba(x[:3]), direct[:3], atol=1e-5)
