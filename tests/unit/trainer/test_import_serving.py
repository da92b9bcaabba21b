"""Import a model a user already has (the thesis model), inspect it, serve it; bad imports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trainer import registry
from trainer.inspect import read_labels
from trainer.model import ModelConfig
from trainer.serving import champion_version, load_alias
from wearmon.errors import IncompatibleModelError
from wearmon.settings import Settings


def _tiny_keras(tmp_path: Path, shape: tuple[int, int], n_classes: int) -> Path:
    import keras

    inp = keras.Input(shape=shape)
    h = keras.layers.GlobalAveragePooling1D()(inp)
    out = keras.layers.Dense(n_classes, activation="softmax")(h)
    p = tmp_path / f"m_{shape[0]}x{shape[1]}_{n_classes}.keras"
    keras.Model(inp, out).save(str(p))
    return p


@pytest.mark.slow
def test_thesis_model_imports_inspects_and_serves(
    settings: Settings, thesis_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wearmon.cli.main import app

    monkeypatch.setenv("WEARMON_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    res = runner.invoke(app, ["model", "inspect", str(thesis_dir / "model.keras")])
    assert res.exit_code == 0, res.output
    assert "200x6 -> 11 classes" in res.output
    assert "ear_rubbing" in res.output and "standing" in res.output

    res = runner.invoke(app, ["model", "import", str(thesis_dir / "model.keras")])
    assert res.exit_code == 0, res.output
    assert champion_version(settings) == "1"

    served = load_alias(settings)
    classes = read_labels(thesis_dir / "label_mapping.json")
    assert served.classes == classes and len(classes) == 11
    scaler = json.loads((thesis_dir / "scaler_config.json").read_text())
    np.testing.assert_allclose(served.scaler.mean, scaler["mean"], rtol=1e-6)

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3, 200, 6)) * scaler["scale"] + scaler["mean"]).astype(np.float32)
    import keras

    direct = keras.saving.load_model(str(thesis_dir / "model.keras"), compile=False)
    xs = ((x - np.asarray(scaler["mean"])) / np.asarray(scaler["scale"])).astype(np.float32)
    want = np.asarray(direct(xs, training=False))
    np.testing.assert_allclose(served.predict_proba(x), want, atol=1e-5)
    np.testing.assert_allclose(served.predict_proba(x[:1]), want[:1], atol=1e-5)


@pytest.mark.slow
def test_import_rejects_wrong_shape_and_class_mismatch(settings: Settings, tmp_path: Path) -> None:
    wrong = _tiny_keras(tmp_path, (100, 3), 4)
    with pytest.raises(IncompatibleModelError, match=r"does not fit the canonical window"):
        registry.import_model(settings, wrong)
    ok = _tiny_keras(tmp_path, (200, 6), 4)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"0": "a", "1": "b", "2": "c"}))
    with pytest.raises(IncompatibleModelError, match=r"outputs 4 classes but 3 class names"):
        registry.import_model(settings, ok, labels=labels)
    bad_scaler = tmp_path / "scaler.json"
    bad_scaler.write_text(json.dumps({"mean": [0, 0, 0], "scale": [1, 1, 1]}))
    with pytest.raises(IncompatibleModelError, match="scaler"):
        registry.import_model(settings, ok, scaler=bad_scaler)
    assert registry.list_versions(settings) == []  # nothing registered by a failed import


def test_cli_error_is_one_line(tmp_path: Path, cli_error) -> None:
    err = cli_error(["model", "inspect", str(tmp_path / "nope.keras")])
    assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)


def test_read_labels_formats(tmp_path: Path) -> None:
    p = tmp_path / "l.json"
    p.write_text(json.dumps({"1": "b", "0": "a"}))
    assert read_labels(p) == ["a", "b"]
    p.write_text(json.dumps({"a": 0, "b": 1}))
    assert read_labels(p) == ["a", "b"]
    p.write_text(json.dumps(["x", "y"]))
    assert read_labels(p) == ["x", "y"]
    p.write_text(json.dumps({"0": "a", "2": "c"}))
    with pytest.raises(IncompatibleModelError):
        read_labels(p)


@pytest.mark.slow
def test_version_download_shows_no_progress_bar(
    settings: Settings, tiny_config: ModelConfig, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import os

    from trainer.model import build_model

    net = build_model(tiny_config, 3)
    meta = {
        "classes": ["a", "b", "c"],
        "window": 200,
        "scaler": {"mean": [0.0] * 6, "scale": [1.0] * 6},
    }
    d = registry.save_model_dir(tmp_path / "v", net, meta)
    version = registry.register_dir(settings, d)
    capfd.readouterr()
    got = registry.version_dir(settings, version)
    assert (got / "metadata.json").is_file()
    assert "Downloading artifacts" not in capfd.readouterr().err
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ  # put back afterwards
