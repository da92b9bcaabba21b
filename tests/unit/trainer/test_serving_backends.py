"""stream.inference_backend: the setting is honoured, the export is cached with the version,
a backend that cannot be served falls back to tf with a logged reason; the thesis model."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tests.integration.stream_support import tiny_model_dir
from trainer import export
from trainer.serving import attach_backend, from_dir, load_version
from wearmon.errors import ConfigError
from wearmon.settings import Settings, StreamSettings


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    return tiny_model_dir(tmp_path / "v1")


def _windows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 200, 6)) * [3, 3, 3, 60, 60, 60] + [0, 0, 9, 0, 0, 0]
    return x.astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino", "auto"])
def test_exported_backend_agrees_with_the_tf_function(backend: str, tiny_dir: Path) -> None:
    tf_model = from_dir(tiny_dir, "1", backend="tf")
    served = from_dir(tiny_dir, "1", backend=backend, threads=1)
    assert tf_model.backend == "tf" and tf_model.runner is None
    assert served.backend == ("onnx" if backend == "auto" else backend)
    assert served.backend_info["label_agreement"] == 1.0
    assert served.backend_info["max_abs_diff"] < 1e-3
    x = _windows(70)  # more than one ORT chunk, padded to a bucket for OpenVINO
    np.testing.assert_allclose(served.predict_proba(x), tf_model.predict_proba(x), atol=1e-5)
    np.testing.assert_allclose(
        served.predict_proba(x[:1]), tf_model.predict_proba(x[:1]), atol=1e-5
    )
    served.warmup()
    assert served.predict_proba(x[:0]).shape == (0, 7)
    assert served.classes == tf_model.classes and served.window == 200 and served.version == "1"


@pytest.mark.slow
def test_export_is_cached_beside_the_version_and_reused(settings: Settings, tmp_path: Path) -> None:
    from trainer.registry import register_dir, version_dir

    version = register_dir(settings, tiny_model_dir(tmp_path / "src"))
    onnx = settings.model_copy(
        update={"stream": StreamSettings(inference_backend="onnx", inference_threads=1)}
    )
    first = load_version(onnx, version)
    cached = version_dir(settings, version) / export.SERVING_DIR / export.ONNX_FILE
    assert cached.is_file() and first.backend_info["file"] == str(cached)
    assert first.backend_info["reused_cache"] is False
    mtime = cached.stat().st_mtime_ns
    second = load_version(onnx, version)
    assert second.backend == "onnx" and second.backend_info["reused_cache"] is True
    assert cached.stat().st_mtime_ns == mtime, "the second load converted again"


@pytest.mark.slow
def test_failed_conversion_falls_back_to_tf_with_a_logged_reason(
    tiny_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The version folder cannot hold the export (a file where its serving/ folder goes):
    the model is served by the tf.function and the log says why."""
    (tiny_dir / export.SERVING_DIR).write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="trainer.serving"):
        served = from_dir(tiny_dir, "1", backend="onnx")
    assert served.backend == "tf" and served.runner is None
    assert "onnx" in served.backend_info["refused"]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("inference backend onnx refused, serving with tf" in m for m in msgs), msgs
    assert served.predict_proba(_windows(3)).shape == (3, 7)


@pytest.mark.slow
def test_a_broken_cached_export_is_converted_again(
    tiny_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from_dir(tiny_dir, "1", backend="onnx")  # converts and stamps
    cached = tiny_dir / export.SERVING_DIR / export.ONNX_FILE
    cached.write_bytes(b"not onnx")
    with caplog.at_level(logging.WARNING, logger="trainer.export"):
        served = from_dir(tiny_dir, "1", backend="onnx")
    assert served.backend == "onnx" and served.backend_info["reused_cache"] is False
    assert any("does not load" in r.getMessage() for r in caplog.records)
    assert cached.read_bytes() != b"not onnx"


def test_the_setting_is_validated_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tiny_dir: Path
) -> None:
    assert Settings().stream.inference_backend == "auto"
    monkeypatch.setenv("WEARMON_STREAM__INFERENCE_BACKEND", "openvino")
    assert Settings().stream.inference_backend == "openvino"
    monkeypatch.setenv("WEARMON_STREAM__INFERENCE_BACKEND", "tensorrt")
    with pytest.raises(ValidationError):
        Settings()
    served = from_dir(tiny_dir, "1", backend="tf")
    with pytest.raises(ConfigError, match=r"stream\.inference_backend 'tensorrt'"):
        attach_backend(served, tiny_dir, "tensorrt")
    assert attach_backend(served, tiny_dir, "tf") == "tf" and served.runner is None


@pytest.mark.slow
def test_thesis_model_backends(settings: Settings, thesis_dir: Path, tmp_path: Path) -> None:
    """The study's model: ONNX Runtime (the default, auto) agrees on real windows; the
    opt-in bf16 path is served when named; int8 is refused (it changes labels)."""
    from trainer.datasets import load_dataset
    from trainer.registry import version_dir

    for name in ("model.keras", "label_mapping.json", "scaler_config.json"):
        shutil.copy(thesis_dir / name, tmp_path / name)
    from trainer.registry import import_model

    version = import_model(
        settings,
        tmp_path / "model.keras",
        labels=tmp_path / "label_mapping.json",
        scaler=tmp_path / "scaler_config.json",
    )
    directory = version_dir(settings, version)
    served = from_dir(directory, version, backend="auto", threads=1)
    assert served.backend == "onnx"
    import json

    stamp = json.loads((directory / export.SERVING_DIR / export.STAMP_FILE).read_text())
    assert stamp["batchnorm_folded"] is True  # the thesis model's five batch norms
    x = load_dataset("seglearn").x[::4]
    from wearmon.signals.normalize import standardize

    want = np.asarray(served.keras_model.predict_on_batch(standardize(x, served.scaler)))
    got = served.predict_proba(x)
    assert np.abs(got - want).max() < 1e-3
    assert (got.argmax(1) == want.argmax(1)).all()
    bf16 = from_dir(directory, version, backend="openvino-bf16", threads=1)
    assert bf16.backend == "openvino-bf16" and bf16.backend_info["reused_cache"] is True
    int8 = from_dir(directory, version, backend="onnx-int8", threads=1)
    assert (
        int8.backend == "tf" and "disagrees with Keras" in int8.backend_info["refused"]["onnx-int8"]
    )
