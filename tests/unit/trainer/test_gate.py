"""The promotion gate is a pure function on metrics."""

from __future__ import annotations

import math

import pytest

from trainer.gate import gate


def test_no_champion_passes() -> None:
    assert gate({"accuracy": 0.5, "macro_f1": 0.4}, None).passed


def test_better_or_equal_passes_with_deltas() -> None:
    r = gate({"accuracy": 0.91, "macro_f1": 0.90}, {"accuracy": 0.90, "macro_f1": 0.90})
    assert r.passed
    assert r.deltas["accuracy"] == pytest.approx(0.01) and r.deltas["macro_f1"] == 0


def test_within_margin_passes_and_beyond_fails() -> None:
    champ = {"accuracy": 0.90, "macro_f1": 0.88}
    assert gate({"accuracy": 0.895, "macro_f1": 0.875}, champ, margin=0.01).passed
    r = gate({"accuracy": 0.95, "macro_f1": 0.86}, champ, margin=0.01)
    assert not r.passed and "macro_f1" in r.reason and "accuracy" not in r.reason


def test_zero_margin_is_strict() -> None:
    assert not gate(
        {"accuracy": 0.8999}, {"accuracy": 0.9}, margin=0.0, metrics=["accuracy"]
    ).passed


def test_missing_or_nan_challenger_metric_fails() -> None:
    assert not gate({"accuracy": 0.9}, {"accuracy": 0.8, "macro_f1": 0.8}).passed
    assert not gate({"accuracy": 0.9, "macro_f1": math.nan}, {"accuracy": 0.8}).passed


def test_metric_missing_on_champion_is_ignored() -> None:
    assert gate({"accuracy": 0.9, "macro_f1": 0.1}, {"accuracy": 0.9}).passed


def test_negative_margin_rejected() -> None:
    with pytest.raises(ValueError):
        gate({"accuracy": 1.0}, {"accuracy": 1.0}, margin=-0.1)
