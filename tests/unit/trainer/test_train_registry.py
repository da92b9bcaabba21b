"""Train a tiny model for one epoch, register it, load it back by alias: same predictions."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.trainer.conftest import TINY_CONFIG
from trainer import registry
from trainer.model import ModelConfig, predict_proba
from trainer.serving import champion_version, load_alias, load_version
from trainer.train import TrainOptions, TrainResult, cross_validate, train
from wearmon.settings import Settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, TrainOptions, TrainResult]:
    """One tiny model trained on subjects 1-3 into a registry of its own: version 1, the
    champion. The tests below read it; only the fine-tuning test registers (version 2) and
    it leaves the champion alone."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("trained") / "data")
    opts = TrainOptions(
        config=TINY_CONFIG, subjects=("1", "2", "3"), max_windows_per_subject=24, train_hop=100
    )
    return settings, opts, train(settings, opts)


@pytest.mark.slow
def test_train_register_load_by_alias_same_predictions(
    trained: tuple[Settings, TrainOptions, TrainResult],
) -> None:
    settings, _, res = trained
    assert res.version == "1"
    assert set(res.split.train) | set(res.split.val) | set(res.split.test) == {"1", "2", "3"}
    assert not set(res.split.train) & set(res.split.test)
    assert res.metrics and 0.0 <= res.metrics["accuracy"] <= 1.0
    assert champion_version(settings) == "1"  # the first version becomes champion
    from trainer.promotion import read_decisions

    first = read_decisions(settings, "1")[0]  # ... through trainer.promotion, recorded
    assert first["decision"] == "initial" and first["reason"] == "first version: no champion yet"

    served = load_alias(settings, "champion")
    assert served.version == "1" and served.window == 200
    meta = served.metadata
    assert meta["classes"] == served.classes and len(served.classes) == 7
    assert meta["window"] == 200 and meta["hop"] == 100 and meta["rate_hz"] == 50
    assert meta["channels"] == ["Ax", "Ay", "Az", "Gx", "Gy", "Gz"]
    assert len(meta["data"]["hash"]) == 64 and meta["split"]["test"] == res.split.test

    profile = registry.read_reference_profile(settings, "1")
    assert profile is not None and len(profile) > 0 and "Ax_mean" in profile.columns
    assert set(profile["subject"]) == set(res.split.train)
    # one training subject: too few to calibrate drift thresholds on; none stored
    assert registry.read_calibration(settings, "1") is None

    rng = np.random.default_rng(1)
    x = (rng.normal(size=(5, 200, 6)) * [3, 3, 3, 40, 40, 40]).astype(np.float32)
    import keras

    direct = keras.saving.load_model(
        str(registry.model_file(registry.version_dir(settings, "1"))), compile=False
    )
    want = predict_proba(direct, x, served.scaler)
    got = served.predict_proba(x)
    assert got.shape == (5, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(
        load_version(settings, "1").predict_proba(x[:1]), want[:1], atol=1e-5
    )


@pytest.mark.slow
def test_fine_tune_from_version_with_frozen_conv(
    trained: tuple[Settings, TrainOptions, TrainResult],
) -> None:
    settings, base, first = trained
    tuned = train(
        settings, TrainOptions(**{**base.__dict__, "init_from": "champion", "freeze_conv": True})
    )
    assert (first.version, tuned.version) == ("1", "2")
    meta = registry.read_metadata(settings, "2")
    assert meta["init_from"].endswith("/1") and meta["freeze_conv"] is True
    # fine-tuning keeps the source model's normalisation
    assert meta["scaler"] == registry.read_metadata(settings, "1")["scaler"]
    assert champion_version(settings) == "1"  # registering never moves the champion
    assert champion_version(settings, "challenger") == "2"  # it awaits the gate


@pytest.mark.slow
def test_cross_validation_reports_mean_and_spread(
    settings: Settings, tiny_config: ModelConfig
) -> None:
    opts = TrainOptions(
        config=tiny_config, subjects=("1", "2", "3", "4"), max_windows_per_subject=12, train_hop=100
    )
    s = cross_validate(settings, opts, 2)
    assert len(s["folds"]) == 2
    tested = sorted(x for f in s["folds"] for x in f["test_subjects"])
    assert tested == ["1", "2", "3", "4"]
    for f in s["folds"]:
        assert not set(f["test_subjects"]) & set(f["val_subjects"])
    assert 0 <= s["accuracy_mean"] <= 1 and s["accuracy_std"] >= 0 and "macro_f1_mean" in s


@pytest.mark.slow
def test_evaluate_writes_json_markdown_png_and_logs(
    trained: tuple[Settings, TrainOptions, TrainResult],
) -> None:
    from trainer.evaluate_run import evaluate_version

    settings, _, res = trained
    out = evaluate_version(settings, "champion", subjects=res.split.test)
    m = out["metrics"]
    assert out["version"] == "1" and m["n"] > 0
    for key in ("accuracy", "macro_f1", "weighted_f1", "cohen_kappa", "mcc", "roc_auc_ovr"):
        assert key in m
    names = {p.name for p in out["report_dir"].iterdir()}
    assert {"metrics.json", "report.md", "confusion_matrix.png"} <= names
    assert (res.report_dir / "training_curves.png").is_file()


@pytest.mark.slow
def test_ensemble_recipe_cv_without_validation_and_served_as_one_model(
    settings: Settings, tiny_config: ModelConfig
) -> None:
    from dataclasses import replace

    cfg = replace(
        tiny_config, epochs=2, ensemble=2, schedule="cosine", mirror=True, mirror_tta=True
    )
    opts = TrainOptions(
        config=cfg,
        subjects=("1", "2", "3", "4"),
        max_windows_per_subject=12,
        train_hop=100,
        val_fraction=0.0,
    )
    s = cross_validate(settings, opts, 2, only_folds=[1])
    (row,) = s["folds"]
    assert row["fold"] == 1 and row["val_subjects"] == []  # every training subject trains
    assert row["epochs"] == 4 and len(row["member_accuracy"]) == 2  # fixed epochs, 2 members
    assert s["only_folds"] == [1] and s["val_fraction"] == 0.0

    res = train(settings, replace(opts, subjects=("1", "2", "3")))
    served = load_alias(settings)
    assert served.version == res.version == "1"
    assert served.metadata["model_config"]["ensemble"] == 2
    p = served.predict_proba(np.zeros((3, 200, 6), np.float32))
    assert p.shape == (3, 7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
