"""Exported inference paths: agreement arithmetic, conversion, cache and the tolerance check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer import export
from trainer.model import ModelConfig, build_model, with_mirror_tta
from wearmon.errors import ExportError
from wearmon.signals.normalize import Scaler


def test_agreement_counts_labels_and_the_largest_difference() -> None:
    ref = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]], dtype=np.float32)
    got = np.array([[0.8, 0.2], [0.6, 0.4], [0.5, 0.5]], dtype=np.float32)
    a = export.agreement(ref, got)
    assert a.n == 3 and a.max_abs == pytest.approx(0.2, abs=1e-6)
    assert a.label_agreement == pytest.approx(2 / 3)
    assert not a.within(export.TOLERANCES["onnx"])
    assert export.agreement(ref, ref).within(export.TOLERANCES["onnx"])
    nan = got.copy()
    nan[0, 0] = np.nan
    assert export.agreement(ref, nan).label_agreement == 0.0
    with pytest.raises(ExportError, match="differs from Keras"):
        export.agreement(ref, got[:2])


def test_reduced_precision_paths_are_wider_and_not_automatic() -> None:
    for name in export.REDUCED:
        assert export.TOLERANCES[name].max_abs > export.TOLERANCES["onnx"].max_abs
        assert name not in export.AUTO_ORDER
    assert all(export.TOLERANCES[n].min_label_agreement == 1.0 for n in export.AUTO_ORDER)


def _mirror_tta_model(tiny_config: ModelConfig) -> tuple[object, Scaler]:
    import keras

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    scaler = Scaler.fit(rng.normal(0, 3, size=(50, 200, 6)).astype(np.float32))
    return with_mirror_tta(build_model(tiny_config, 4), scaler), scaler


@pytest.mark.slow
@pytest.mark.parametrize("name", ["onnx", "openvino"])
def test_exported_path_agrees_with_keras_on_a_mirror_tta_model(
    name: str, tiny_config: ModelConfig, tmp_path: Path
) -> None:
    """Our trained models serve mirror TTA inside one Keras model (a nested network called
    twice); the exported fp32 paths reproduce it."""
    model, scaler = _mirror_tta_model(tiny_config)
    mfile = tmp_path / "model.keras"
    model.save(str(mfile))  # type: ignore[attr-defined]
    done = export.export_and_check(name, model, tmp_path, mfile, scaler)
    assert done.agreement.max_abs < 1e-5 and done.agreement.label_agreement == 1.0
    assert not done.reused and done.path == tmp_path / export.SERVING_DIR / export.ONNX_FILE
    xs = np.random.default_rng(4).normal(size=(5, 200, 6)).astype(np.float32)
    want = export.keras_reference(model, xs)
    got = export.run_batched(done.runner, xs, buckets=(1, 8, 256))
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
def test_a_backend_outside_its_tolerance_is_refused(
    tiny_config: ModelConfig, tmp_path: Path
) -> None:
    model, scaler = _mirror_tta_model(tiny_config)
    mfile = tmp_path / "model.keras"
    model.save(str(mfile))  # type: ignore[attr-defined]
    path, reused = export.cached_files(tmp_path, model, mfile, "onnx")
    assert not reused
    runner = export.make_runner("onnx", path, threads=1)
    xs = export.probe_windows(scaler)
    ref = export.keras_reference(model, xs)
    assert export.check_agreement("onnx", runner, xs, ref).max_abs < 1e-5
    shifted = ref.copy()
    shifted[:, 0] += 2e-3  # a reference 2e-3 away: over the fp32 tolerance, labels unchanged
    with pytest.raises(ExportError, match=r"onnx disagrees with Keras: max abs .* 2\.0\de-03"):
        export.check_agreement("onnx", runner, xs, shifted)


@pytest.mark.slow
def test_cache_is_keyed_by_the_model_file(tiny_config: ModelConfig, tmp_path: Path) -> None:
    """A cached export is reused for the same model file and redone for a different one."""
    model, _ = _mirror_tta_model(tiny_config)
    mfile = tmp_path / "model.keras"
    model.save(str(mfile))  # type: ignore[attr-defined]
    path, reused = export.cached_files(tmp_path, model, mfile, "onnx")
    first = path.stat().st_mtime_ns
    assert not reused
    path, reused = export.cached_files(tmp_path, model, mfile, "onnx")
    assert reused and path.stat().st_mtime_ns == first
    other = build_model(tiny_config, 4)
    other.save(str(mfile))  # a different model file under the same name
    path, reused = export.cached_files(tmp_path, other, mfile, "onnx")
    assert not reused


def test_unknown_backend_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown inference backend 'tensorrt'"):
        export.make_runner("tensorrt", tmp_path / "m.onnx")


def _bn_sequential(padding: str = "valid") -> object:
    """A small model of the thesis model's shape: conv/BN/dropout, BiLSTM/BN, flatten/dense/BN,
    with batch-norm statistics far from the identity."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((40, 6)),
            layers.Conv1D(8, 2, activation="relu", padding=padding),
            layers.BatchNormalization(),
            layers.Dropout(0.3),
            layers.Conv1D(8, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.Bidirectional(layers.LSTM(6, return_sequences=True)),
            layers.BatchNormalization(),
            layers.Dropout(0.2),
            layers.Flatten(),
            layers.Dense(10, activation="relu"),
            layers.BatchNormalization(),
            layers.Dense(3, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.weights[0].shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, n),
                    rng.normal(0, 0.5, n),
                    rng.normal(0, 1, n),
                    rng.uniform(0.2, 3, n),
                ]
            )
    return model


def test_batchnorm_folding_keeps_the_function() -> None:
    from keras import layers

    model = _bn_sequential()
    folded = export.fold_batchnorm(model)
    assert folded is not None
    kinds = {type(lay) for lay in folded.layers}
    assert layers.BatchNormalization not in kinds and layers.Dropout not in kinds
    xs = np.random.default_rng(8).normal(size=(16, 40, 6)).astype(np.float32)
    want = export.keras_reference(model, xs)
    got = export.keras_reference(folded, xs)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_batchnorm_that_cannot_fold_exactly_leaves_the_model_alone() -> None:
    import keras
    from keras import layers

    # a "same"-padded convolution before the batch norm is fine (the BN folds forward)
    assert export.fold_batchnorm(_bn_sequential(padding="same")) is not None
    # ... after it, not: its zero padding would not be shifted like the BN's output
    seq = keras.Sequential(
        [
            keras.Input((40, 6)),
            layers.BatchNormalization(),
            layers.Conv1D(4, 3, padding="same"),
            layers.Flatten(),
            layers.Dense(2, activation="softmax"),
        ]
    )
    assert export.fold_batchnorm(seq) is None
    inp = keras.Input((40, 6))
    h = layers.Flatten()(layers.BatchNormalization()(inp))
    assert export.fold_batchnorm(keras.Model(inp, layers.Dense(2)(h))) is None  # not Sequential
